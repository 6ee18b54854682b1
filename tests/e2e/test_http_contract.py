"""The HTTP contract against the running dev stack (`python -m devstack`, as `make dev` runs it), as a
client would use it: real HTTP through the gateway that serves template.yaml, the authorizer and handler
functions in their own worker processes, the SQS poller and the local E2B API.

`make smoke API=<ApiUrl> KEY=<ssk_...> [KEY2=<another project's key>]` runs the same tests against a deployed
stack; what needs the local E2B API's controls skips there (plugins.services.local_only). Every run uses
its own user id and tag, so it can repeat against a stack that keeps earlier runs' sessions."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from e2b import Sandbox, SandboxQuery, SandboxState

from plugins.services import local_only

pytestmark = pytest.mark.e2e


def call(stack: dict, method: str, path: str, key: str | None, body: Any = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        stack["api_url"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json", **({"x-api-key": key} if key is not None else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def sandboxes_of(stack: dict, project_id: str, session_id: str) -> list[str]:
    query = SandboxQuery(
        metadata={"project_id": project_id, "session_id": session_id},
        state=[SandboxState.RUNNING, SandboxState.PAUSED],
    )
    paginator = Sandbox.list(
        query=query,
        api_key=stack["e2b_api_key"],
        api_url=stack["e2b_api_url"],
        sandbox_url=stack["e2b_sandbox_url"],
    )
    found: list[str] = []
    while paginator.has_next:
        found += [info.sandbox_id for info in paginator.next_items()]
    return found


def _fresh() -> tuple[str, str]:
    """A user id and a tag no earlier run used."""
    run = uuid.uuid4().hex[:12]
    return f"u-{run}", f"e2e-{run}"


def test_the_whole_session_lifecycle_over_http(devstack: dict) -> None:
    key = devstack["projects"][0]["api_key"]
    user, tag = _fresh()

    assert call(devstack, "GET", "/v1/sessions", None)[0] == 401
    status, body = call(devstack, "GET", "/v1/sessions", "ssk_0123456789ab_" + "A" * 43)
    assert status == 401 and body["error"]["code"] == "unauthorized"

    status, created = call(
        devstack, "POST", "/v1/sessions", key, {"user_id": user, "tag": tag, "config": {"a": 1}}
    )
    assert status == 201 and created["version"] == 1
    sid = created["id"]
    assert call(devstack, "POST", "/v1/sessions", key, {"user_id": user, "tag": tag}) == (200, created)
    assert call(devstack, "GET", f"/v1/sessions/{sid}", key) == (200, created)
    status, listing = call(devstack, "GET", f"/v1/sessions?limit=10&user_id={user}", key)
    assert status == 200 and [item["id"] for item in listing["items"]] == [sid]
    status, patched = call(
        devstack, "PATCH", f"/v1/sessions/{sid}", key, {"metadata": {"m": 1}, "expected_version": 1}
    )
    assert status == 200 and patched["version"] == 2
    assert (
        call(devstack, "PATCH", f"/v1/sessions/{sid}", key, {"metadata": {}, "expected_version": 1})[0] == 409
    )
    assert call(devstack, "POST", "/v1/sessions", key, {"user_id": 5})[0] == 422
    assert call(devstack, "GET", f"/v1/sessions/{sid}", key) == (200, patched)

    # The workbench: created on first use, reused after.
    status, ran = call(devstack, "POST", f"/v1/sessions/{sid}/execute", key, {"command": "echo hello"})
    assert status == 200 and ran["stdout"] == "hello\n" and ran["exit_code"] == 0, ran
    status, again = call(devstack, "POST", f"/v1/sessions/{sid}/execute", key, {"command": "echo again"})
    assert status == 200 and again["sandbox_id"] == ran["sandbox_id"]

    # DELETE: 404 everywhere at once; the tombstone stays listed with its teardown state.
    status, deleted = call(devstack, "DELETE", f"/v1/sessions/{sid}", key)
    assert status == 200 and deleted["deleted"] is True
    for method, path, payload in [
        ("GET", f"/v1/sessions/{sid}", None),
        ("PATCH", f"/v1/sessions/{sid}", {"metadata": {}}),
        ("DELETE", f"/v1/sessions/{sid}", None),
        ("POST", f"/v1/sessions/{sid}/execute", {"command": "true"}),
    ]:
        assert call(devstack, method, path, key, payload)[0] == 404, (method, path)
    status, tombs = call(devstack, "GET", f"/v1/sessions?include_deleted=true&user_id={user}", key)
    tomb = next(item for item in tombs["items"] if item["id"] == sid)
    assert tomb["deleted"] is True and tomb["teardown"]["state"] in ("pending", "done")
    # The tag is free again.
    status, reused = call(devstack, "POST", "/v1/sessions", key, {"user_id": user, "tag": tag})
    assert status == 201 and reused["id"] != sid
    assert call(devstack, "DELETE", f"/v1/sessions/{reused['id']}", key)[0] == 200


def test_another_project_gets_404_everywhere_and_changes_nothing(devstack: dict) -> None:
    if len(devstack["projects"]) < 2:
        local_only(devstack, "needs a second project's key (make smoke ... KEY2=<another project's key>)")
    key, other = devstack["projects"][0]["api_key"], devstack["projects"][1]["api_key"]
    user, tag = _fresh()
    status, created = call(devstack, "POST", "/v1/sessions", key, {"user_id": user, "tag": tag})
    assert status == 201
    sid = created["id"]
    assert call(devstack, "GET", f"/v1/sessions/{sid}", other)[0] == 404
    assert call(devstack, "PATCH", f"/v1/sessions/{sid}", other, {"metadata": {"x": 1}})[0] == 404
    assert call(devstack, "DELETE", f"/v1/sessions/{sid}", other)[0] == 404
    assert call(devstack, "POST", f"/v1/sessions/{sid}/execute", other, {"command": "true"})[0] == 404
    assert call(devstack, "GET", f"/v1/sessions/{sid}", key) == (200, created)
    assert call(devstack, "DELETE", f"/v1/sessions/{sid}", key)[0] == 200


def test_a_paused_workbench_resumes_and_its_teardown_kills_it(devstack: dict) -> None:
    local_only(devstack, "pauses and lists sandboxes through the local E2B API's key and URLs")
    mine = devstack["projects"][0]
    key = mine["api_key"]
    user, _ = _fresh()
    status, created = call(devstack, "POST", "/v1/sessions", key, {"user_id": user})
    assert status == 201
    sid = created["id"]
    status, ran = call(devstack, "POST", f"/v1/sessions/{sid}/execute", key, {"command": "echo hello"})
    assert status == 200 and ran["stdout"] == "hello\n"
    e2b = {
        "api_key": devstack["e2b_api_key"],
        "api_url": devstack["e2b_api_url"],
        "sandbox_url": devstack["e2b_sandbox_url"],
    }
    Sandbox.pause(ran["sandbox_id"], **e2b)
    status, resumed = call(devstack, "POST", f"/v1/sessions/{sid}/execute", key, {"command": "echo resumed"})
    assert status == 200 and resumed["stdout"] == "resumed\n" and resumed["sandbox_id"] == ran["sandbox_id"]
    Sandbox.pause(ran["sandbox_id"], **e2b)
    assert sandboxes_of(devstack, mine["project_id"], sid) == [ran["sandbox_id"]]

    # DELETE: the (paused) sandbox is gone within 10 s, by the SQS-driven teardown.
    assert call(devstack, "DELETE", f"/v1/sessions/{sid}", key)[0] == 200
    deadline = time.monotonic() + 10
    while sandboxes_of(devstack, mine["project_id"], sid) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert sandboxes_of(devstack, mine["project_id"], sid) == []
