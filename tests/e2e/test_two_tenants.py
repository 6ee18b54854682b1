"""Tenant isolation, generated from the OpenAPI document the dev stack serves: for EVERY operation that
addresses a session or a tool, project B, given project A's ids, gets 404 and A's resources are unchanged
(compared before and after each request). An operation added later is covered without editing this file;
one with a path parameter this file has no value for fails until it gets one.

Each request is B's, with B's API key and, where the operation accepts session tokens, also with a token
of B's own session. Bodies are the document's examples (tests/unit/test_openapi.py requires one wherever
a body is). One rule is HTTP's, not an exception: PUT names the resource it creates or replaces, so B's
PUT /v1/tools/{A's tool name} creates B's own tool (2xx) and must leave A's alone.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from e2b import Sandbox, SandboxQuery, SandboxState

from plugins.services import local_only

pytestmark = pytest.mark.e2e
METHODS = ("get", "put", "post", "delete", "patch")


def call(
    stack: dict[str, Any],
    method: str,
    path: str,
    *,
    key: str | None = None,
    token: str | None = None,
    body: Any = None,
) -> tuple[int, Any]:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        stack["api_url"] + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def ok(stack: dict[str, Any], method: str, path: str, **kw: Any) -> Any:
    status, body = call(stack, method, path, **kw)
    assert status < 300, (method, path, status, body)
    return body


class Tenant:
    """Project A's resources: a session with a message, a token and a sandbox, and a catalog tool."""

    def __init__(self, stack: dict[str, Any], project: dict[str, Any]) -> None:
        self.stack, self.key = stack, project["api_key"]
        self.project_id = project["project_id"]
        run = uuid.uuid4().hex[:10]
        self.tool = f"tenant_probe_{run}"
        ok(stack, "PUT", f"/v1/tools/{self.tool}", key=self.key, body={
            "description": "A's tool", "command": "echo a",
            "input_schema": {"type": "object", "properties": {}},
        })  # fmt: skip
        session = ok(stack, "POST", "/v1/sessions", key=self.key, body={
            "user_id": f"tenant-{run}", "tag": f"tenant-{run}", "config": {"a": 1}, "metadata": {"m": 1},
        })  # fmt: skip
        self.session_id = session["id"]
        ok(stack, "POST", f"/v1/sessions/{self.session_id}/messages", key=self.key, body={"content": "hello"})
        self.token = ok(stack, "POST", f"/v1/sessions/{self.session_id}/tokens", key=self.key)["token"]
        ok(stack, "POST", f"/v1/sessions/{self.session_id}/execute", key=self.key, body={"command": "true"})

    def path_values(self) -> dict[str, str]:
        return {"session_id": self.session_id, "tool_name": self.tool}

    def snapshot(self) -> dict[str, Any]:
        """What A can observe of its resources (the session's version and updated_at reveal any write)."""
        sid, stack, key = self.session_id, self.stack, self.key
        state = {
            "session": call(stack, "GET", f"/v1/sessions/{sid}", key=key),
            "by token": call(stack, "GET", f"/v1/sessions/{sid}", token=self.token),
            "messages": call(stack, "GET", f"/v1/sessions/{sid}/messages?after_seq=0", key=key),
            "tool": call(stack, "GET", f"/v1/tools/{self.tool}", key=key),
            "catalog": call(stack, "GET", "/v1/tools?limit=200", key=key),
        }
        if "e2b_api_url" in stack:  # the local E2B API's listing (a deployed stack's E2B key is not ours)
            state["sandboxes"] = sorted(self.sandboxes())
        return state

    def sandboxes(self) -> list[str]:
        query = SandboxQuery(
            metadata={"project_id": self.project_id, "session_id": self.session_id},
            state=[SandboxState.RUNNING, SandboxState.PAUSED],
        )
        paginator = Sandbox.list(
            query=query,
            api_key=self.stack["e2b_api_key"],
            api_url=self.stack["e2b_api_url"],
            sandbox_url=self.stack["e2b_sandbox_url"],
        )
        found: list[str] = []
        while paginator.has_next:
            found += [info.sandbox_id for info in paginator.next_items()]
        return found

    def delete(self) -> None:
        ok(self.stack, "DELETE", f"/v1/sessions/{self.session_id}", key=self.key)
        ok(self.stack, "DELETE", f"/v1/tools/{self.tool}", key=self.key)


def addressed_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) for every operation with a path parameter, PUTs last."""
    found = [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS and "{" in path
    ]
    return sorted(found, key=lambda op: op[0] == "PUT")


def request_body(operation: dict[str, Any]) -> Any:
    if "requestBody" not in operation:
        return None
    examples = operation["requestBody"]["content"]["application/json"]["schema"].get("examples")
    assert examples, f"{operation['operationId']}: the document gives no example body"
    return examples[0]


def test_another_project_reaches_none_of_a_projects_sessions_or_tools(devstack: dict[str, Any]) -> None:
    if len(devstack["projects"]) < 2:
        local_only(devstack, "needs a second project's key (make smoke ... KEY2=<another project's key>)")
    a, b = devstack["projects"][0], devstack["projects"][1]
    status, document = call(devstack, "GET", "/openapi.json")
    assert status == 200
    operations = addressed_operations(document)
    assert len(operations) >= 13, [op[2]["operationId"] for op in operations]  # as of issue 10

    tenant = Tenant(devstack, a)
    b_session = ok(devstack, "POST", "/v1/sessions", key=b["api_key"], body={"user_id": "tenant-b"})["id"]
    b_token = ok(devstack, "POST", f"/v1/sessions/{b_session}/tokens", key=b["api_key"])["token"]
    before = tenant.snapshot()
    assert (
        before["session"][0] == 200 and before["tool"][0] == 200 and len(before["messages"][1]["items"]) == 1
    )
    assert before.get("sandboxes", [None]) != []
    values = tenant.path_values()
    tried = []
    try:
        for method, template, operation in operations:
            names = [segment[1:-1] for segment in template.split("/") if segment.startswith("{")]
            missing = [name for name in names if name not in values]
            assert not missing, f"{method} {template}: no value of A's for {missing}: extend Tenant"
            path = template.format(**values)
            body = request_body(operation)
            credentials = [{"key": b["api_key"]}]
            if {"SessionToken": []} in operation["security"]:
                credentials.append({"token": b_token})
            for credential in credentials:
                status, answer = call(devstack, method, path, body=body, **credential)
                what = f"{method} {template} as B ({next(iter(credential))})"
                if method == "PUT" and "{session_id}" not in template:  # B's own resource of that name
                    assert status in (200, 201), (what, status, answer)
                    ok(devstack, "DELETE", path, key=b["api_key"])
                else:
                    assert status == 404, (what, status, answer)
                    assert str(status) in operation["responses"], what
                assert tenant.snapshot() == before, f"{what} changed project A's resources"
                tried.append(what)
    finally:
        tenant.delete()
        ok(devstack, "DELETE", f"/v1/sessions/{b_session}", key=b["api_key"])
    assert len(tried) >= len(operations)
