"""Drives a session's MCP endpoint with the official `mcp` 1.x client, unmodified, as an agent would.

Runs in its own tool environment (.tools/mcp1, made by the Makefile: mcp 1.x and 2.x cannot share one).
Usage: client_v1.py URL HEADERS_JSON MODE [TRANSPORT], MODE "scenario", "connect" or "limited"; TRANSPORT
"http_client" (default: `streamable_http_client(url, http_client=httpx.AsyncClient(headers=...))`, the 1.x
line's current form) or "headers" (`streamablehttp_client(url, headers=...)`, the form most agent code
written against 1.x uses; deprecated in 1.2x, still shipped). Prints one JSON object.
"""

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client, streamablehttp_client
from mcp.shared.exceptions import McpError


def text(result: Any) -> str:
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


async def scenario(session: ClientSession) -> dict[str, Any]:
    init = await session.initialize()
    names, cursor = [], None
    while True:
        page = await session.list_tools(cursor=cursor)
        names += [tool.name for tool in page.tools]
        cursor = page.nextCursor
        if not cursor:
            break
    wrote = await session.call_tool("write_file", {"path": "notes/hello.txt", "content": "hello from mcp v1"})
    read = await session.call_tool("read_file", {"path": "notes/hello.txt"})
    ran = await session.call_tool("run_command", {"command": "echo $((6 * 7)); cat notes/hello.txt"})
    catalog = await session.call_tool("echo_args", {"text": "héllo", "n": 3})
    invalid = await session.call_tool("echo_args", {"n": "not a number"})
    try:
        await session.call_tool("no_such_tool", {})
        unknown = None
    except McpError as error:
        unknown = error.error.code
    return {
        "protocol": init.protocolVersion,
        "server": init.serverInfo.name,
        "tools": names,
        "write": [wrote.isError, text(wrote)],
        "read": [read.isError, text(read)],
        "run": [ran.isError, text(ran)],
        "catalog": [catalog.isError, catalog.structuredContent],
        "invalid": [invalid.isError, text(invalid)],
        "unknown_tool_code": unknown,
    }


async def limited(session: ClientSession) -> dict[str, Any]:
    """Two commands where the compute limit allows one: the second call fails with the server's reason, and
    the session carries on."""
    await session.initialize()
    first = await session.call_tool("run_command", {"command": "echo first"})
    try:
        await session.call_tool("run_command", {"command": "echo second"})
        refused: list[Any] = [None, None]
    except McpError as error:
        refused = [error.error.code, str(error)]
    after = await session.list_tools()
    return {"first": [first.isError, text(first)], "refused": refused, "tools_after": len(after.tools)}


@contextlib.asynccontextmanager
async def connected(url: str, headers: dict[str, str], transport: str) -> AsyncIterator[ClientSession]:
    if transport == "headers":
        streams = streamablehttp_client(url, headers=headers, timeout=60, sse_read_timeout=120)
        async with streams as (read, write, _session_id), ClientSession(read, write) as session:
            yield session
        return
    timeout = httpx.Timeout(60, read=120)
    async with (
        httpx.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as (read, write, _session_id),
        ClientSession(read, write) as session,
    ):
        yield session


async def main(url: str, headers: dict[str, str], mode: str, transport: str) -> dict[str, Any]:
    try:
        async with connected(url, headers, transport) as session:
            if mode == "scenario":
                return {"ok": True, **(await scenario(session))}
            if mode == "limited":
                return {"ok": True, **(await limited(session))}
            init = await session.initialize()
            tools = await session.list_tools()
            return {"ok": True, "protocol": init.protocolVersion, "tools": len(tools.tools)}
    except BaseException as raised:  # the client raises ExceptionGroups out of its task groups
        error = raised
        while isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]
        code = error.error.code if isinstance(error, McpError) else None
        status = error.response.status_code if isinstance(error, httpx.HTTPStatusError) else None
        return {
            "ok": False,
            "type": type(error).__name__,
            "message": str(error),
            "code": code,
            "status": status,
        }


if __name__ == "__main__":
    transport = sys.argv[4] if len(sys.argv) > 4 else "http_client"
    print(json.dumps(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], transport))))
