"""The official MCP Python clients, 1.x and 2.x, unmodified, against the running dev stack: each in its own
tool environment (.tools/mcp1, .tools/mcp2, made by `make test`), as an agent framework would connect.
Each writes and reads a file, runs a command, calls a catalog tool with arguments, sends a schema-invalid
call, cannot reach another project's session, and sees an error once the session is deleted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_http_contract import call

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {
    "mcp1": (ROOT / ".tools/mcp1/bin/python", Path(__file__).parent / "mcp_clients/client_v1.py"),
    "mcp2": (ROOT / ".tools/mcp2/bin/python", Path(__file__).parent / "mcp_clients/client_v2.py"),
}
ECHO = {
    "description": "Echo the arguments back as JSON",
    "input_schema": {
        "type": "object",
        "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
        "required": ["text"],
    },
    "command": "printf '%s' \"$TOOL_ARGUMENTS\"",
}


def run_client(
    client: str, url: str, headers: dict[str, str], mode: str, transport: str | None = None
) -> dict[str, Any]:
    python, script = CLIENTS[client]
    if not python.exists():
        pytest.fail(f"{python} is missing: `make test` (or `make e2e`) creates the MCP client environments")
    done = subprocess.run(
        [str(python), str(script), url, json.dumps(headers), mode, *([transport] if transport else [])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("client", ["mcp1", "mcp2"])
@pytest.mark.parametrize("credential", ["api_key", "session_token"])
def test_an_official_client_uses_a_session_end_to_end(devstack: dict, client: str, credential: str) -> None:
    key = devstack["projects"][0]["api_key"]
    other_key = devstack["projects"][1]["api_key"]
    assert call(devstack, "PUT", "/v1/tools/echo_args", key, ECHO)[0] in (200, 201)
    status, session = call(devstack, "POST", "/v1/sessions", key, {"user_id": f"{client}-agent"})
    assert status == 201
    url = f"{devstack['api_url']}/v1/sessions/{session['id']}/mcp"
    if credential == "api_key":
        headers = {"x-api-key": key}
    else:
        minted = call(devstack, "POST", f"/v1/sessions/{session['id']}/tokens", key, {"ttl_s": 600})[1]
        headers = {"authorization": f"Bearer {minted['token']}"}

    # 1.x: with an API key, the `streamablehttp_client(url, headers=...)` form most 1.x agent code uses; with
    # a token, the 1.x line's current `streamable_http_client(url, http_client=...)`.
    legacy = "headers" if client == "mcp1" and credential == "api_key" else None
    seen = run_client(client, url, headers, "scenario", legacy)
    assert seen["ok"], seen
    assert seen["protocol"] == ("2025-11-25" if client == "mcp1" else "2026-07-28")
    assert {"run_command", "read_file", "write_file", "list_files", "search_tools", "echo_args"} <= set(
        seen["tools"]
    )
    assert seen["write"][0] is False and "notes/hello.txt" in seen["write"][1]
    assert seen["read"] == [False, f"hello from mcp v{client[-1]}"]
    assert seen["run"] == [False, f"42\nhello from mcp v{client[-1]}"]
    assert seen["catalog"] == [False, {"text": "héllo", "n": 3}]
    assert seen["invalid"][0] is True and "text" in seen["invalid"][1]  # required and missing; nothing ran
    assert seen["unknown_tool_code"] == -32602

    # Another project's key cannot reach this session.
    foreign = run_client(client, url, {"x-api-key": other_key}, "connect")
    assert foreign["ok"] is False

    assert call(devstack, "DELETE", f"/v1/sessions/{session['id']}", key)[0] == 200
    gone = run_client(client, url, headers, "connect")
    assert gone["ok"] is False
    if client == "mcp1":
        assert gone["type"] == "McpError" and "terminated" in gone["message"].lower()
    else:
        assert (
            gone["type"] == "MCPError" and gone["code"] == -32001 and "session not found" in gone["message"]
        )
