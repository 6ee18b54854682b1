"""Drives a session's MCP endpoint with the official `mcp` 2.x client, unmodified, as an agent would: its
`Client` in auto mode (server/discover under 2026-07-28, falling back to the handshake).

Runs in its own tool environment (.tools/mcp2, made by the Makefile: mcp 1.x and 2.x cannot share one).
Usage: client_v2.py URL HEADERS_JSON MODE, MODE "scenario", "connect" or "limited". Prints one JSON
object.
"""

import asyncio
import json
import sys
from typing import Any

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client


def text(result: Any) -> str:
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


async def scenario(client: Client) -> dict[str, Any]:
    names, cursor = [], None
    while True:
        page = await client.list_tools(cursor=cursor)
        names += [tool.name for tool in page.tools]
        cursor = page.next_cursor
        if not cursor:
            break
    wrote = await client.call_tool("write_file", {"path": "notes/hello.txt", "content": "hello from mcp v2"})
    read = await client.call_tool("read_file", {"path": "notes/hello.txt"})
    ran = await client.call_tool("run_command", {"command": "echo $((6 * 7)); cat notes/hello.txt"})
    catalog = await client.call_tool("echo_args", {"text": "héllo", "n": 3})
    invalid = await client.call_tool("echo_args", {"n": "not a number"})
    try:
        await client.call_tool("no_such_tool", {})
        unknown = None
    except MCPError as error:
        unknown = error.code
    return {
        "protocol": getattr(client, "protocol_version", None),
        "tools": names,
        "write": [wrote.is_error, text(wrote)],
        "read": [read.is_error, text(read)],
        "run": [ran.is_error, text(ran)],
        "catalog": [catalog.is_error, catalog.structured_content],
        "invalid": [invalid.is_error, text(invalid)],
        "unknown_tool_code": unknown,
    }


async def limited(client: Client) -> dict[str, Any]:
    """Two commands where the compute limit allows one: the second call fails with the server's reason, and
    the session carries on."""
    first = await client.call_tool("run_command", {"command": "echo first"})
    try:
        await client.call_tool("run_command", {"command": "echo second"})
        refused: list[Any] = [None, None]
    except MCPError as error:
        refused = [error.code, str(error)]
    after = await client.list_tools()
    return {"first": [first.is_error, text(first)], "refused": refused, "tools_after": len(after.tools)}


async def main(url: str, headers: dict[str, str], mode: str) -> dict[str, Any]:
    try:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60, read=120)) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            if mode == "scenario":
                return {"ok": True, **(await scenario(client))}
            if mode == "limited":
                return {"ok": True, **(await limited(client))}
            tools = await client.list_tools()
            return {"ok": True, "tools": len(tools.tools)}
    except BaseException as raised:  # the client raises ExceptionGroups out of its task groups
        error = raised
        while isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]
        code = error.code if isinstance(error, MCPError) else None
        return {"ok": False, "type": type(error).__name__, "message": str(error), "code": code}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]))))
