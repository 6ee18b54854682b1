"""Rate limits and idempotency keys against the running dev stack, as `make dev` serves them: real HTTP, the
authorizer and route functions in their own worker processes (so two requests are truly in flight at
once), `session-admin --local` as an operator runs it, and the official MCP clients.

`make smoke` runs the idempotency test against a deployed stack too; what needs session-admin on the
stack's tables (a project with small limits) is local only."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_mcp_clients import run_client

from plugins.services import local_only

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def request(
    stack: dict, method: str, path: str, key: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, dict[str, str]]:
    """(status, body, headers with lower-case names)."""
    sent = {"content-type": "application/json", "x-api-key": key, **(headers or {})}
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(stack["api_url"] + path, method=method, data=data, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, got = error.code, error.read(), error.headers
    return status, json.loads(raw or b"null"), {name.lower(): value for name, value in got.items()}


def session_admin(stack: dict, *args: str) -> dict[str, Any]:
    """`session-admin --local` against the dev stack, as its README shows."""
    endpoints = str(Path(stack["state_dir"]) / "endpoints.json")
    done = subprocess.run(
        [sys.executable, "-m", "session_service.edges.cli", "--local", "--endpoints", endpoints, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[0]))


def limited_key(stack: dict, per_minute: int | None = None, compute_per_minute: int | None = None) -> str:
    project = session_admin(stack, "create-project", f"limited-{uuid.uuid4().hex[:8]}")["project_id"]
    limits = [*(["--per-minute", str(per_minute)] if per_minute else [])]
    limits += ["--compute-per-minute", str(compute_per_minute)] if compute_per_minute else []
    session_admin(stack, "set-limits", project, *limits)
    return str(session_admin(stack, "issue-key", project)["api_key"])


def test_a_burst_over_the_limit_gets_429_with_retry_after(devstack: dict) -> None:
    local_only(devstack, "sets a project's limits with session-admin --local")
    key = limited_key(devstack, per_minute=5)
    replies = [request(devstack, "GET", "/v1/sessions", key) for _ in range(6)]
    assert [status for status, _, _ in replies] == [200] * 5 + [429]
    _, body, headers = replies[-1]
    assert body["error"]["code"] == "rate_limited"
    assert 1 <= int(headers["retry-after"]) <= 12  # one request every 12 s
    assert (headers["ratelimit-limit"], headers["ratelimit-remaining"]) == ("5", "0")
    assert [h["ratelimit-remaining"] for _, _, h in replies[:5]] == ["4", "3", "2", "1", "0"]


def test_a_retried_execute_with_the_same_key_runs_once(devstack: dict) -> None:
    key = devstack["projects"][0]["api_key"]
    status, session, _ = request(
        devstack, "POST", "/v1/sessions", key, {"user_id": f"idem-{uuid.uuid4().hex}"}
    )
    assert status == 201
    path = f"/v1/sessions/{session['id']}/execute"
    run = {"command": "echo run >> runs.txt; wc -l < runs.txt"}
    once = {"Idempotency-Key": uuid.uuid4().hex}
    first = request(devstack, "POST", path, key, run, once)
    retried = request(devstack, "POST", path, key, run, once)
    assert first[0] == retried[0] == 200 and retried[1] == first[1] and first[1]["stdout"] == "1\n"
    assert "idempotent-replayed" not in first[2] and retried[2]["idempotent-replayed"] == "true"
    assert request(devstack, "POST", path, key, {"command": "cat runs.txt"})[1]["stdout"] == "run\n"
    assert request(devstack, "DELETE", f"/v1/sessions/{session['id']}", key)[0] == 200


def test_the_same_key_while_the_first_still_runs_is_409(devstack: dict) -> None:
    key = devstack["projects"][-1]["api_key"]
    status, session, _ = request(
        devstack, "POST", "/v1/sessions", key, {"user_id": f"idem-{uuid.uuid4().hex}"}
    )
    assert status == 201
    path = f"/v1/sessions/{session['id']}/execute"
    # The first request's command holds until the test releases it, so the second surely overlaps it.
    held = {
        "command": (
            "touch started; until [ -e release ]; do sleep 0.1; done; echo run >> runs.txt; wc -l < runs.txt"
        ),
        "timeout_s": 20,
    }
    once = {"Idempotency-Key": uuid.uuid4().hex}
    first: list[tuple[int, Any, dict[str, str]]] = []
    runner = threading.Thread(target=lambda: first.append(request(devstack, "POST", path, key, held, once)))
    runner.start()
    try:
        probe = {"command": "test -e started && echo yes || true"}
        deadline = time.monotonic() + 20
        while request(devstack, "POST", path, key, probe)[1]["stdout"] != "yes\n":  # its command runs
            assert time.monotonic() < deadline, "the first request's command never started"
            time.sleep(0.2)
        status, body, _ = request(devstack, "POST", path, key, held, once)
    finally:
        request(devstack, "POST", path, key, {"command": "touch release"})
        runner.join()
    assert status == 409 and body["error"]["code"] == "idempotency_in_progress", (status, body, first)
    assert first[0][0] == 200 and first[0][1]["stdout"] == "1\n"
    after = request(devstack, "POST", path, key, held, once)  # finished now: its response, replayed
    assert after[0] == 200 and after[1] == first[0][1] and after[2]["idempotent-replayed"] == "true"
    assert request(devstack, "POST", path, key, {"command": "cat runs.txt"})[1]["stdout"] == "run\n"
    assert request(devstack, "DELETE", f"/v1/sessions/{session['id']}", key)[0] == 200


@pytest.mark.parametrize("client", ["mcp1", "mcp2"])
def test_an_official_mcp_client_is_told_it_is_rate_limited_and_carries_on(
    devstack: dict, client: str
) -> None:
    local_only(devstack, "sets a project's limits with session-admin --local")
    key = limited_key(devstack, compute_per_minute=1)
    status, session, _ = request(devstack, "POST", "/v1/sessions", key, {"user_id": f"{client}-limited"})
    assert status == 201
    seen = run_client(
        client, f"{devstack['api_url']}/v1/sessions/{session['id']}/mcp", {"x-api-key": key}, "limited"
    )
    assert seen["ok"], seen
    assert seen["first"] == [False, "first\n"]
    code, message = seen["refused"]
    assert code == -32029 and "rate limit" in message
    assert seen["tools_after"] >= 5  # the session goes on: tools/list is not compute
    assert request(devstack, "DELETE", f"/v1/sessions/{session['id']}", key)[0] == 200
