"""The document and the edge cannot drift: for EVERY operation of the OpenAPI document (generated from
session_service.edges.operations), what the running code does with rate limits and Idempotency-Keys is what
the document says (`x-rate-limit`, `x-idempotent`). A route added later, or a flag changed on one side only,
fails here without editing this file.

Each operation is called once, validly (the document's example bodies, on a live session and tool of the
project), with a fresh API key of a project whose general and compute limits differ: the response's
RateLimit-Limit names the bucket that bound it. Then once more with an Idempotency-Key of 256 characters:
422 exactly where the document says the header is read.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from plugins.api import Api, Project
from session_service.edges.openapi import build_document

GENERAL, COMPUTE = 500, 7
METHODS = ("get", "put", "post", "delete", "patch")
# The MCP endpoint spends compute on tools/call only (its description says so); the other methods are general.
MCP_TOOLS_CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_files"}}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS and operation["security"]
    ]


def valid_request(api: Api, project: Project, path: str, operation: dict[str, Any]) -> tuple[str, Any]:
    """A concrete path on fresh resources of the project (an operation may delete them), and a body."""
    session = api.create(project)
    tool = f"t_{uuid.uuid4().hex[:10]}"
    put = api.call("PUT", f"/v1/tools/{tool}", key=project.api_key, body={
        "description": "probe", "command": "true", "input_schema": {"type": "object"},
    })  # fmt: skip
    assert put.status == 201
    concrete = path.format(session_id=session["id"], tool_name=tool)
    if operation["operationId"] == "mcp":
        return concrete, MCP_TOOLS_CALL
    if operation["operationId"] == "callTool":
        concrete = path.format(session_id=session["id"], tool_name="list_files")
        return concrete, {"arguments": {}}
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    return concrete, (body.get("examples") or [None])[0]


def test_each_operation_takes_from_the_bucket_the_document_names(
    api: Api, admin: Any, document: dict[str, Any]
) -> None:
    created = admin.create_project("edge-contract")
    admin.set_limits(created.project_id, GENERAL, COMPUTE)  # before any request: limits are cached
    owner = Project(created.project_id, admin.issue_key(created.project_id).api_key)
    checked = []
    for method, path, operation in operations(document):
        concrete, body = valid_request(api, owner, path, operation)
        fresh_key = admin.issue_key(created.project_id).api_key  # buckets are per key: this one is full
        reply = api.call(
            method, concrete, key=fresh_key, body=body, headers={"mcp-protocol-version": "2025-06-18"}
        )
        what = f"{method} {path}"
        assert reply.status < 300, (what, reply.status, reply.body)
        assert "error" not in (reply.body or {}), (what, reply.body)  # a JSON-RPC error is a 200 too
        expected = COMPUTE if operation["x-rate-limit"] == "compute" else GENERAL
        assert reply.headers.get("ratelimit-limit") == str(expected), (what, reply.headers)
        checked.append(operation["operationId"])
    assert {"execute", "callTool", "mcp", "createSession", "getSession"} <= set(checked)


def test_the_idempotency_key_is_read_exactly_where_the_document_says(
    api: Api, project: Project, document: dict[str, Any]
) -> None:
    too_long = "k" * 256
    idempotent = []
    for method, path, operation in operations(document):
        concrete, body = valid_request(api, project, path, operation)
        reply = api.call(
            method, concrete, key=project.api_key, body=body, headers={"idempotency-key": too_long}
        )
        refused_for_the_key = reply.status == 422 and any(
            detail.get("loc") == ["header", "Idempotency-Key"]
            for detail in ((reply.body or {}).get("error") or {}).get("details") or []
        )
        what = f"{method} {path}"
        assert refused_for_the_key == bool(operation.get("x-idempotent")), (what, reply.status, reply.body)
        if refused_for_the_key:
            idempotent.append(operation["operationId"])
    assert sorted(idempotent) == ["appendMessage", "callTool", "createSession", "execute"]
