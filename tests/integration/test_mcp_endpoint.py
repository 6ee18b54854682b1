"""The MCP endpoint on the wire (JSON-RPC over POST) through the local API Gateway and McpFunction, against
the real services: both protocol generations, the transport's rules, tools/list and tools/call with the
REST call's semantics, and 404 with a JSON-RPC body on every request once the session is gone. (The
official clients, 1.x and 2.x, drive the dev stack in tests/e2e/test_mcp_clients.py.)"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline
from session_service.domain import ids

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "0"},
}


class Mcp:
    def __init__(self, api: Api, project: Project, session_id: str, token: str | None = None) -> None:
        self.api, self.project, self.session_id, self.token = api, project, session_id, token
        self.next_id = 0

    def post(self, message: Any, version: str | None = None, **headers: str) -> Any:
        sent = {**({"mcp-protocol-version": version} if version else {}), **headers}
        return self.api.call(
            "POST",
            f"/v1/sessions/{self.session_id}/mcp",
            key=None if self.token else self.project.api_key,
            token=self.token,
            raw_body=message if isinstance(message, str) else json.dumps(message),
            headers=sent,
        )

    def request(
        self, method: str, params: dict | None = None, version: str | None = "2025-06-18", **headers: str
    ) -> Any:
        self.next_id += 1
        message = {
            "jsonrpc": "2.0",
            "id": self.next_id,
            "method": method,
            **({"params": params} if params is not None else {}),
        }
        return self.post(message, version, **headers)

    def modern(self, method: str, params: dict | None = None, **headers: str) -> Any:
        sent = {"mcp-method": method, **headers}
        return self.request(method, {**(params or {}), "_meta": META}, MODERN, **sent)


@pytest.fixture
def session(api: Api, project: Project) -> dict[str, Any]:
    api.call(
        "PUT",
        "/v1/tools/echo_args",
        key=project.api_key,
        body={
            "description": "Echo the arguments back as JSON",
            "input_schema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
            "command": "printf '%s' \"$TOOL_ARGUMENTS\"",
        },
    )
    return api.create(project)


def test_handshake_negotiates_a_supported_version(api: Api, project: Project, session: dict) -> None:
    mcp = Mcp(api, project, session["id"])
    for asked, got in [
        ("2025-03-26", "2025-03-26"),
        ("2025-06-18", "2025-06-18"),
        ("2025-11-25", "2025-11-25"),
        ("2099-01-01", "2025-11-25"),
        ("2024-11-05", "2025-11-25"),
    ]:
        reply = mcp.request(
            "initialize",
            {"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
            version=None,
        )
        assert reply.status == 200, reply.body
        result = reply.body["result"]
        assert result["protocolVersion"] == got
        assert result["capabilities"] == {"tools": {"listChanged": False}} and result["serverInfo"]["name"]
        assert "resultType" not in result
    initialized = mcp.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, "2025-11-25")
    assert (initialized.status, initialized.body) == (202, None)
    assert mcp.post({"jsonrpc": "2.0", "method": "notifications/whatever"}, "2025-11-25").status == 202
    assert mcp.request("ping").body["result"] == {}
    assert "Mcp-Session-Id".lower() not in {name.lower() for name in mcp.request("ping").headers}


def test_transport_rules(api: Api, project: Project, session: dict) -> None:
    mcp = Mcp(api, project, session["id"])
    for method in ("GET", "DELETE"):
        reply = api.call(method, f"/v1/sessions/{session['id']}/mcp", key=project.api_key)
        assert reply.status == 405 and reply.headers.get("allow") == "POST"
    assert mcp.request("ping", version="1999-01-01").status == 400
    batch = mcp.post([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], "2025-06-18")
    assert batch.status == 400 and batch.body["error"]["code"] == -32600
    assert mcp.post("{not json", "2025-06-18").status == 400
    unknown = mcp.request("resources/list")
    assert unknown.status == 200 and unknown.body["error"]["code"] == -32601  # never a 404


def test_tools_list_and_call_with_the_rest_semantics(
    api: Api, project: Project, session: dict, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    mcp = Mcp(api, project, session["id"])
    listed = mcp.request("tools/list").body["result"]
    names = [tool["name"] for tool in listed["tools"]]
    assert names[:5] == ["run_command", "read_file", "write_file", "list_files", "search_tools"]
    assert "echo_args" in names and "nextCursor" not in listed
    assert all(set(tool) == {"name", "description", "inputSchema"} for tool in listed["tools"])
    ok = mcp.request("tools/call", {"name": "echo_args", "arguments": {"text": "hi"}}).body["result"]
    assert ok["isError"] is False and ok["structuredContent"] == {"text": "hi"}
    failed = mcp.request("tools/call", {"name": "run_command", "arguments": {"command": "exit 2"}}).body[
        "result"
    ]
    assert failed["isError"] is True
    missing = mcp.request("tools/call", {"name": "nope", "arguments": {}})
    assert missing.status == 200 and missing.body["error"]["code"] == -32602
    # Invalid arguments: a JSON-RPC error before 2025-11-25, an isError result from it on; nothing runs.
    old = mcp.request("tools/call", {"name": "echo_args", "arguments": {"text": 5}}, version="2025-06-18")
    assert old.status == 200 and old.body["error"]["code"] == -32602 and old.body["error"]["data"]
    new = mcp.request("tools/call", {"name": "echo_args", "arguments": {"text": 5}}, version="2025-11-25")
    assert new.body["result"]["isError"] is True and "text" in new.body["result"]["content"][0]["text"]


def test_tools_list_pages_with_an_opaque_cursor(api: Api, project: Project, invoker: Any) -> None:
    from session_service.domain.requests import PutToolRequest
    from session_service.runtime import container_for
    from session_service.settings import Settings

    catalog = container_for(Settings.from_env(invoker.env_for("PutToolFunction"))).tool_catalog
    for n in range(120):
        body = {"description": f"tool {n}", "input_schema": {"type": "object"}, "command": "true"}
        catalog.put(project.project_id, f"tool_{n:03d}", PutToolRequest.model_validate(body))
    session = api.create(project)
    mcp = Mcp(api, project, session["id"])
    seen, cursor = [], None
    for _ in range(5):
        result = mcp.request("tools/list", {"cursor": cursor} if cursor else {}).body["result"]
        seen += [tool["name"] for tool in result["tools"]]
        cursor = result.get("nextCursor")
        if not cursor:
            break
    assert len(seen) == 125 and len(set(seen)) == 125
    assert mcp.request("tools/list", {"cursor": "garbage!"}).body["error"]["code"] == -32602


def test_the_stateless_revision(
    api: Api, project: Project, session: dict, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    mcp = Mcp(api, project, session["id"])
    discovered = mcp.modern("server/discover").body["result"]
    assert MODERN in discovered["supportedVersions"] and "2025-06-18" in discovered["supportedVersions"]
    assert discovered["resultType"] == "complete" and discovered["capabilities"]["tools"] == {
        "listChanged": False
    }
    assert discovered["_meta"]["io.modelcontextprotocol/serverInfo"]["name"]
    listed = mcp.modern("tools/list").body["result"]
    assert listed["resultType"] == "complete" and listed["ttlMs"] == 0 and listed["cacheScope"] == "private"
    called = mcp.modern(
        "tools/call", {"name": "echo_args", "arguments": {"text": "hi"}}, **{"mcp-name": "echo_args"}
    )
    assert called.body["result"]["resultType"] == "complete" and called.body["result"]["isError"] is False
    encoded = "=?base64?" + base64.b64encode(b"echo_args").decode() + "?="
    assert (
        mcp.modern(
            "tools/call", {"name": "echo_args", "arguments": {"text": "x"}}, **{"mcp-name": encoded}
        ).status
        == 200
    )
    mismatch = mcp.modern(
        "tools/call", {"name": "echo_args", "arguments": {"text": "x"}}, **{"mcp-name": "other"}
    )
    assert mismatch.status == 400 and mismatch.body["error"]["code"] == -32020
    wrong_method = mcp.request("tools/list", {"_meta": META}, MODERN, **{"mcp-method": "tools/call"})
    assert wrong_method.status == 400 and wrong_method.body["error"]["code"] == -32020
    no_meta = mcp.request("tools/list", {}, MODERN, **{"mcp-method": "tools/list"})
    assert no_meta.status == 400 and no_meta.body["error"]["code"] == -32602
    assert mcp.modern("initialize", {}).body["error"]["code"] == -32601  # no handshake in this revision


def test_a_gone_session_is_404_with_a_jsonrpc_body_on_every_request(
    api: Api, project: Project, other_project: Project, session: dict, teardown: TeardownPipeline
) -> None:
    token = api.call("POST", f"/v1/sessions/{session['id']}/tokens", key=project.api_key).body["token"]
    foreign = Mcp(api, other_project, session["id"])
    assert foreign.request("tools/list").status == 404
    assert Mcp(api, project, session["id"], token=token).request("tools/list").status == 200
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    for mcp in (Mcp(api, project, session["id"]), Mcp(api, project, session["id"], token=token)):
        for reply in (
            mcp.request("initialize", {"protocolVersion": "2025-11-25"}, version=None),
            mcp.request("tools/list"),
            mcp.request("tools/call", {"name": "run_command", "arguments": {"command": "id"}}),
            # tools/list and tools/call read the session once, inside the router: still 404 before any
            # complaint about their params.
            mcp.request("tools/list", {"cursor": "not a cursor"}),
            mcp.request("tools/call", {"name": 7}),
            mcp.request("no/such/method"),
            mcp.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, "2025-11-25"),
            mcp.modern("server/discover"),
            # What the transport refuses is still 404 here: the client learns the session ended.
            mcp.post("{not json", "2025-06-18"),
            mcp.post([{"jsonrpc": "2.0", "id": 1, "method": "ping"}], "2025-06-18"),
            mcp.post({"jsonrpc": "2.0", "id": None, "method": "ping"}, "2025-06-18"),
            mcp.request("tools/list", version="1999-01-01"),
            mcp.request("tools/list", {}, MODERN, **{"mcp-method": "tools/call"}),
        ):
            assert reply.status == 404, reply.body
            assert reply.body["jsonrpc"] == "2.0" and reply.body["error"]["code"] == -32001
        listen = api.call(
            "GET",
            f"/v1/sessions/{session['id']}/mcp",
            key=None if mcp.token else project.api_key,
            token=mcp.token,
        )
        assert listen.status == 404 and listen.body["error"]["code"] == -32001


def test_a_session_that_never_existed_is_404_on_every_request(api: Api, project: Project) -> None:
    mcp = Mcp(api, project, ids.new_session_id())  # well formed: its read finds nothing
    for reply in (
        mcp.request("initialize", {"protocolVersion": "2025-11-25"}),
        mcp.post("{not json", "2025-06-18"),
    ):
        assert reply.status == 404 and reply.body["error"]["code"] == -32001, reply.body


def test_a_token_for_another_session_gets_a_jsonrpc_404(api: Api, project: Project, session: dict) -> None:
    other = api.create(project)
    token = api.call("POST", f"/v1/sessions/{other['id']}/tokens", key=project.api_key).body["token"]
    reply = Mcp(api, project, session["id"], token=token).request("tools/list")
    assert reply.status == 404 and reply.body["jsonrpc"] == "2.0" and "error" in reply.body


def test_ids_and_versions_the_transport_refuses(api: Api, project: Project, session: dict) -> None:
    """MCP's ids are strings or integers, never null; an unsupported MCP-Protocol-Version is a 400 on any
    POST, notifications and responses included."""
    mcp = Mcp(api, project, session["id"])
    for bad_id in (None, 1.5, True, [1]):
        reply = mcp.post({"jsonrpc": "2.0", "id": bad_id, "method": "ping"}, "2025-06-18")
        assert reply.status == 400 and reply.body["error"]["code"] == -32600, bad_id
    assert mcp.post({"jsonrpc": "2.0", "id": "a", "method": "ping"}, "2025-06-18").status == 200
    for message in (
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 7, "result": {}},
    ):
        refused = mcp.post(message, "1999-01-01")
        assert refused.status == 400 and refused.body["id"] == message.get("id")
        assert refused.body["error"]["code"] == -32022
        assert mcp.post(message, "2025-06-18").status == 202


def test_a_body_that_is_not_utf8_is_a_jsonrpc_parse_error(api: Api, project: Project, session: dict) -> None:
    """The gateway passes such a body base64-encoded; it was a 500 (found by schemathesis)."""
    from devstack.gateway import Request

    request = Request(
        method="POST",
        path=f"/v1/sessions/{session['id']}/mcp",
        query="",
        protocol="HTTP/1.1",
        headers=[("content-type", "application/json"), ("x-api-key", project.api_key)],
        body=b"\xff@",
        source_ip="127.0.0.1",
        request_id="not-utf8",
    )
    reply = api.gateway.handle(request)
    assert reply.status == 400
    assert json.loads(reply.body)["error"]["code"] == -32700
