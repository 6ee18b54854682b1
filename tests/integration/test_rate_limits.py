"""Rate limits through the local API Gateway and the route functions, against the real redis-server and moto:
a token bucket per API key and per session token, a tighter one for compute (execute, tool calls, MCP
tools/call), a project's own limits set with session-admin, and failing open when Redis is stopped or hung.

Each test makes a fresh project and sets its limits before its first request: the authorizer reads a
project's limits at most once a minute per process, and a fresh project is read on its first request."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_mcp_endpoint import Mcp

from plugins.api import Api, Project, Reply
from session_service.edges import cli


@pytest.fixture
def limited(admin: Any) -> Any:
    """`limited(per_minute, compute_per_minute)`: a new project with those limits, and one API key."""

    def make(per_minute: int | None = None, compute_per_minute: int | None = None) -> Project:
        created = admin.create_project("limited")
        admin.set_limits(created.project_id, per_minute, compute_per_minute)
        return Project(created.project_id, admin.issue_key(created.project_id).api_key)

    return make


def burst(api: Api, project: Project, method: str, path: str, body: Any = None, *, bound: int) -> list[Reply]:
    """Requests until the first 429 (or `bound` of them)."""
    replies: list[Reply] = []
    for _ in range(bound):
        replies.append(api.call(method, path, key=project.api_key, body=body))
        if replies[-1].status == 429:
            break
    return replies


def test_a_burst_over_the_limit_is_refused_with_429_and_when_to_retry(
    api: Api, admin: Any, limited: Any
) -> None:
    project = limited(per_minute=60)  # a bucket of 60, one more each second
    started = time.monotonic()
    replies = burst(api, project, "POST", "/v1/sessions", {"user_id": "burst"}, bound=200)
    refilled = time.monotonic() - started  # tokens that came back while the burst ran
    refused, created = replies[-1], replies[:-1]

    assert refused.status == 429, [r.status for r in replies]
    assert refused.body["error"]["code"] == "rate_limited" and refused.body["error"]["message"]
    assert refused.headers["retry-after"] == "1"  # the next token is less than a second away
    assert refused.headers["ratelimit-limit"] == "60" and refused.headers["ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["ratelimit-reset"]) <= 60
    # The whole bucket was spent, and what refilled during the burst, nothing more.
    assert 60 <= len(created) <= 60 + refilled + 1 and {r.status for r in created} == {201}
    remaining = [int(r.headers["ratelimit-remaining"]) for r in created]
    assert remaining[0] == 59 and remaining[-1] == 0
    assert all(r.headers["ratelimit-limit"] == "60" for r in created)

    # The refused create changed nothing: the project has exactly the sessions that got a 201. (Another key
    # of the same project has its own bucket, so it can still list.)
    lister = admin.issue_key(project.project_id).api_key
    listed = api.call("GET", "/v1/sessions", key=lister, query={"limit": "100"})
    assert listed.status == 200 and len(listed.body["items"]) == len(created)

    time.sleep(int(refused.headers["retry-after"]))
    again = api.call("POST", "/v1/sessions", key=project.api_key, body={"user_id": "burst"})
    assert again.status == 201, again.body


def test_compute_routes_have_the_tighter_limit(api: Api, admin: Any, limited: Any) -> None:
    project = limited(per_minute=100, compute_per_minute=3)  # a compute token every 20 s
    key = project.api_key
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    run = {"command": "echo run >> runs.txt"}
    runs = [api.call("POST", f"{path}/execute", key=key, body=run) for _ in range(3)]
    assert [r.status for r in runs] == [200, 200, 200]
    assert [r.headers["ratelimit-remaining"] for r in runs] == ["2", "1", "0"]
    assert {r.headers["ratelimit-limit"] for r in runs} == {"3"}

    refused = api.call("POST", f"{path}/execute", key=key, body=run)
    assert refused.status == 429 and refused.body["error"]["code"] == "rate_limited"
    assert refused.headers["ratelimit-limit"] == "3"
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    call = api.call(
        "POST", f"{path}/tools/run_command/call", key=key, body={"arguments": {"command": "true"}}
    )
    assert call.status == 429  # tool calls share the compute bucket

    # The general bucket still has tokens: other routes are fine, and say so.
    read = api.call("GET", path, key=key)
    assert read.status == 200 and read.headers["ratelimit-limit"] == "100"
    assert 90 <= int(read.headers["ratelimit-remaining"]) < 100
    # The refused execute ran nothing (read with another key, which has buckets of its own).
    other_key = admin.issue_key(project.project_id).api_key
    runs_file = api.call(
        "POST", f"{path}/tools/read_file/call", key=other_key, body={"arguments": {"path": "runs.txt"}}
    )
    assert runs_file.status == 200 and runs_file.body["content"][0]["text"] == "run\nrun\nrun\n"


def test_mcp_tools_call_is_compute_limited_and_answers_in_json_rpc(api: Api, limited: Any) -> None:
    project = limited(per_minute=100, compute_per_minute=1)
    session = api.create(project)
    mcp = Mcp(api, project, session["id"])
    first = mcp.request("tools/call", {"name": "run_command", "arguments": {"command": "echo hi"}})
    assert first.status == 200 and first.body["result"]["isError"] is False, first.body
    assert first.headers["ratelimit-limit"] == "1" and first.headers["ratelimit-remaining"] == "0"

    # Handshake versions: HTTP 200 with a JSON-RPC error (the official 1.x client ends its session on any
    # other status), so the agent's call fails with a reason and its session carries on.
    legacy = mcp.request("tools/call", {"name": "run_command", "arguments": {"command": "echo again"}})
    assert legacy.status == 200 and legacy.body["id"] == mcp.next_id
    assert legacy.body["error"]["code"] == -32029
    assert legacy.body["error"]["data"]["code"] == "rate_limited"
    assert legacy.body["error"]["data"]["retryAfter"] == int(legacy.headers["retry-after"]) >= 1
    # 2026-07-28: the transport's own status, 429, with the same JSON-RPC body (mcp 2.x raises its error).
    modern = mcp.modern(
        "tools/call", {"name": "run_command", "arguments": {"command": "echo"}}, **{"mcp-name": "run_command"}
    )
    assert modern.status == 429 and modern.body["error"]["code"] == -32029
    assert "retry-after" in modern.headers

    listing = mcp.request("tools/list")  # not compute: the general bucket still has tokens
    assert listing.status == 200 and "result" in listing.body
    assert listing.headers["ratelimit-limit"] == "100"


def test_each_api_key_and_session_token_has_its_own_bucket(api: Api, admin: Any, limited: Any) -> None:
    project = limited(per_minute=5)
    session = api.create(project)  # 1 of 5
    path = f"/v1/sessions/{session['id']}"
    token = api.call("POST", f"{path}/tokens", key=project.api_key).body["token"]  # 2 of 5
    spent = burst(api, project, "GET", path, bound=10)
    assert [r.status for r in spent] == [200, 200, 200, 429]

    by_token = api.call("GET", path, key=None, token=token)
    assert by_token.status == 200 and by_token.headers["ratelimit-remaining"] == "4"
    second_key = admin.issue_key(project.project_id).api_key
    by_other_key = api.call("GET", path, key=second_key)
    assert by_other_key.status == 200 and by_other_key.headers["ratelimit-remaining"] == "4"


def test_a_projects_own_limits_are_set_with_session_admin(
    api: Api, admin: Any, local_resources: Any, local_endpoints: Any, tmp_path: Path, capsys: Any
) -> None:
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(
        json.dumps(
            {
                "aws_endpoint_url": local_endpoints.aws_endpoint_url,
                "region": local_endpoints.region,
                "tables": {name: local_resources.ref(name) for name in ("ProjectsTable", "ApiKeysTable")},
            }
        )
    )
    local = ["--local", "--endpoints", str(endpoints)]

    def admin_cli(*args: str) -> tuple[int, Any]:
        code = cli.main([*local, *args])
        out = capsys.readouterr().out.strip()
        return code, json.loads(out) if out else None

    created = admin.create_project("own-limits")
    code, shown = admin_cli(
        "set-limits", created.project_id, "--per-minute", "4", "--compute-per-minute", "2"
    )
    assert code == 0
    assert shown == {
        "project_id": created.project_id,
        "rate_limit_per_minute": 4,
        "compute_rate_limit_per_minute": 2,
    }
    key = admin.issue_key(created.project_id).api_key
    statuses = [api.call("GET", "/v1/sessions", key=key) for _ in range(5)]
    assert [r.status for r in statuses] == [200, 200, 200, 200, 429]
    assert statuses[0].headers["ratelimit-limit"] == "4"

    assert admin_cli("set-limits", created.project_id, "--per-minute", "0")[0] == 1  # 1..1,000,000
    assert admin_cli("set-limits", "prj_01jc0000000000000000000000", "--per-minute", "5")[0] == 1
    code, cleared = admin_cli("set-limits", created.project_id)  # no option: back to the stack's defaults
    assert code == 0 and cleared["rate_limit_per_minute"] is None
    assert cleared["compute_rate_limit_per_minute"] is None
    assert admin.set_limits(created.project_id, None, None).rate_limit_per_minute is None


def fail_open_evidence(caplog: Any, capsys: Any) -> tuple[list[str], int]:
    """What an operator sees: the limiter's warnings, and the RateLimitFailOpen metric (EMF lines)."""
    logged = [r.getMessage() for r in caplog.records if "rate limiter" in r.getMessage()]
    counted = 0
    for line in capsys.readouterr().out.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "_aws" in record:
                value = record.get("RateLimitFailOpen", 0)
                counted += sum(value) if isinstance(value, list) else int(value)
    return logged, counted


def test_redis_stopped_the_limiter_fails_open_logged_and_counted(
    api: Api, limited: Any, redis_down: Any, caplog: Any, capsys: Any
) -> None:
    project = limited(per_minute=2)
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    with redis_down():
        replies = [api.call("GET", path, key=project.api_key) for _ in range(4)]  # more than the limit
        created = api.call("POST", "/v1/sessions", key=project.api_key, body={"user_id": "open"})
    assert [r.status for r in replies] == [200, 200, 200, 200]
    assert created.status == 201
    assert not any("ratelimit-limit" in r.headers for r in replies)  # unchecked, so nothing to tell
    logged, counted = fail_open_evidence(caplog, capsys)
    assert "rate limiter unavailable; failing open" in logged
    assert counted == 5


@contextlib.contextmanager
def hung(server: Any) -> Iterator[None]:
    """Redis stops answering (SIGSTOP: its connections stay open, nothing answers)."""
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP/SIGCONT")
def test_redis_hung_the_limiter_fails_open(
    api: Api, limited: Any, redis_server: Any, caplog: Any, capsys: Any
) -> None:
    project = limited(per_minute=2)
    sessions = [api.create(project) for _ in range(2)]  # the whole bucket
    with hung(redis_server):
        replies = [api.call("GET", f"/v1/sessions/{s['id']}", key=project.api_key) for s in sessions * 2]
    assert [r.status for r in replies] == [200, 200, 200, 200]
    logged, counted = fail_open_evidence(caplog, capsys)
    assert "rate limiter unavailable; failing open" in logged
    assert counted == 4
    time.sleep(1.1)  # the breaker: Redis is asked again a second after it failed
    assert api.call("GET", f"/v1/sessions/{sessions[0]['id']}", key=project.api_key).status == 429
