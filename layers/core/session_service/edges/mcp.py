"""A session's MCP endpoint: the Model Context Protocol's streamable HTTP transport, stateless, answered with
`application/json` only (no SSE stream, no Mcp-Session-Id: the session is in the path), so it runs on Lambda.

This module is an edge, like session_service.edges.api: it translates JSON-RPC into calls of the tool router
and owns no tool logic. Two generations of the protocol are spoken on the same endpoint:

- the handshake versions 2025-03-26, 2025-06-18 and 2025-11-25: `initialize` (version negotiation),
  `notifications/initialized`, `ping`; the version is the `MCP-Protocol-Version` header (none: 2025-03-26);
- the stateless 2026-07-28: `server/discover`; every request carries `_meta` (protocol version, client
  capabilities) that must agree with the `MCP-Protocol-Version`, `Mcp-Method` and (tools/call) `Mcp-Name`
  headers; results carry `resultType` (and tools/list `ttlMs`/`cacheScope`).

Both: `tools/list` (opaque cursor, built-ins on the first page) and `tools/call` (the REST call's semantics:
a tool's failure is a result with isError; an unknown tool is a JSON-RPC error). Every notification is 202
with no body; GET and DELETE are 405 at once. An unknown, foreign or deleted session is HTTP 404 with a
JSON-RPC error body on every request, so a client sees its session end.

Statuses: in the handshake versions every JSON-RPC error goes out with HTTP 200 (the official 1.x client
drops the connection on any other status but 202 and 404); in 2026-07-28 a request the transport rejects
(bad headers or _meta, an unsupported version) is 400, as that revision specifies. Deviation: an unknown
method is HTTP 200 with -32601 in every version (2026-07-28 says 404), because a 404 must only ever mean
"this session is gone".

Rate limits: each request takes a token from its credential's bucket, a tools/call also from the tighter
compute bucket (session_service.services.limits); a refusal is a JSON-RPC error -32029 with Retry-After.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from session_service.domain.entities import Tool
from session_service.domain.errors import (
    DependencyUnavailable,
    NotFound,
    RateLimited,
    SandboxUnavailable,
    ValidationFailed,
)
from session_service.domain.output import items_that_fit
from session_service.services.limits import RateLimiter, RateLimits
from session_service.services.tools import ToolRouter

if TYPE_CHECKING:
    from session_service.runtime import Container

LEGACY_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")
MODERN_VERSION = "2026-07-28"
SUPPORTED_VERSIONS = (*LEGACY_VERSIONS, MODERN_VERSION)
DEFAULT_VERSION = "2025-03-26"  # no header and no other clue (the transport spec)
ERRORS_AS_RESULTS_FROM = "2025-11-25"  # from here on, invalid tool arguments are an isError result
SERVER_INFO = {"name": "session-service", "version": "1.0"}
INSTRUCTIONS = (
    "Tools of one agent session. Use search_tools to find a tool by what it does; tools run in the session's "
    "sandbox, and run_command, read_file, write_file and list_files act on it directly."
)
PAGE_SIZE = 100
META = "io.modelcontextprotocol/"
OUTPUT_META = "session-service/output"  # a tool result's _meta key (MCP: a prefix, then a name)

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL = (
    -32700,
    -32600,
    -32601,
    -32602,
    -32603,
)
SESSION_NOT_FOUND = -32001
RATE_LIMITED = -32029  # server-defined (the spec has no code for it); data: {"code", "retryAfter"}
HEADER_MISMATCH, UNSUPPORTED_VERSION = -32020, -32022


@dataclass
class McpReply:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


class McpError(Exception):
    def __init__(self, code: int, message: str, *, status: int = 200, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.data = code, message, status, data


def error_body(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def session_gone(request_id: Any = None) -> McpReply:
    """What every request on an unknown, foreign or deleted session gets."""
    return McpReply(
        404, error_body(request_id, SESSION_NOT_FOUND, "session not found (deleted or never existed)")
    )


class McpEndpoint:
    def __init__(self, router: ToolRouter, limiter: RateLimiter | None = None) -> None:
        self._router = router
        self._limiter = limiter

    def handle(
        self,
        project_id: str,
        session_id: str,
        method: str,
        headers: dict[str, str],
        body: str | None,
        caller: tuple[str, RateLimits] | None = None,
    ) -> McpReply:
        """`caller`: the credential and its limits. Every POST takes a token from the general bucket, a
        tools/call also from the compute bucket (one limiter call per request, as on the REST routes)."""
        message: dict[str, Any] | None = None
        if method == "POST":
            with contextlib.suppress(McpError):  # answered below: a malformed request costs a token too
                message = self._message(body)
        refusal, limit_headers = self._limit(project_id, caller, headers, message)
        if refusal is not None:
            return refusal
        reply = self._handle(project_id, session_id, method, headers, body)
        reply.headers.update(limit_headers)
        return reply

    def _limit(
        self,
        project_id: str,
        caller: tuple[str, RateLimits] | None,
        headers: dict[str, str],
        message: dict[str, Any] | None,
    ) -> tuple[McpReply | None, dict[str, str]]:
        """Over the limit: a JSON-RPC error with Retry-After, at HTTP 429 in 2026-07-28; in the handshake
        versions at HTTP 200 like every JSON-RPC error there (the official 1.x client ends its session on
        any other status), so an agent's call fails and its session carries on."""
        if self._limiter is None or caller is None:
            return None, {}
        compute = message is not None and message.get("method") == "tools/call"
        try:
            decision = self._limiter.check(project_id, caller[0], caller[1], compute=compute)
        except RateLimited as limited:
            status = 429 if headers.get("mcp-protocol-version") == MODERN_VERSION else 200
            data = {"code": limited.code, "retryAfter": int(limited.headers["Retry-After"])}
            request_id = message.get("id") if message is not None else None
            body = error_body(request_id, RATE_LIMITED, limited.message, data)
            return McpReply(status, body, dict(limited.headers)), {}
        return None, decision.headers() if decision is not None else {}

    def _handle(
        self, project_id: str, session_id: str, method: str, headers: dict[str, str], body: str | None
    ) -> McpReply:
        if method != "POST":
            body_405 = error_body(
                None, INVALID_REQUEST, f"{method} is not supported: POST one JSON-RPC message"
            )
            return self._unless_gone(project_id, session_id, None, McpReply(405, body_405, {"allow": "POST"}))
        try:
            message = self._message(body)
        except McpError as error:
            refused = McpReply(error.status, error_body(None, error.code, error.message, error.data))
            return self._unless_gone(project_id, session_id, None, refused)
        request_id = message.get("id")
        try:
            return self._dispatch(project_id, session_id, headers, message)
        except NotFound:
            return session_gone(request_id)
        except McpError as error:
            if "id" not in message and error.status < 400:  # a notification gets no JSON-RPC answer...
                return McpReply(202)
            # ...but one the transport refuses (a bad header) is an HTTP error, with an id-less body.
            refused = McpReply(error.status, error_body(request_id, error.code, error.message, error.data))
            return self._unless_gone(project_id, session_id, request_id, refused)
        except (SandboxUnavailable, DependencyUnavailable) as error:
            return McpReply(200, error_body(request_id, INTERNAL, f"{error.message} (retry the request)"))

    def _unless_gone(self, project_id: str, session_id: str, request_id: Any, reply: McpReply) -> McpReply:
        """A refused request (bad framing, a bad header, GET) on a deleted, foreign or unknown session is
        404 like every other request to it: a client learns the session ended whatever it sent. Only
        refusals pay for this read."""
        if reply.status < 400:
            return reply
        try:
            self._router.live_session(project_id, session_id)
        except NotFound:
            return session_gone(request_id)
        except (SandboxUnavailable, DependencyUnavailable):
            pass  # the refusal stands: it is about the request, not the session
        return reply

    # -- framing -------------------------------------------------------------------------------------------

    @staticmethod
    def _message(body: str | None) -> dict[str, Any]:
        try:
            message = json.loads(body or "", parse_constant=lambda name: None)
        except (ValueError, RecursionError) as error:
            raise McpError(PARSE_ERROR, f"not JSON: {error}", status=400) from error
        if isinstance(message, list):
            raise McpError(
                INVALID_REQUEST, "batches are not supported: send one message per POST", status=400
            )
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise McpError(INVALID_REQUEST, "not a JSON-RPC 2.0 message", status=400)
        if "method" not in message and ("result" in message or "error" in message):
            return message  # a response (we never ask the client anything): accepted like a notification
        if not isinstance(message.get("method"), str):
            raise McpError(INVALID_REQUEST, "a JSON-RPC request needs a method", status=400)
        if "params" in message and not isinstance(message["params"], dict):
            raise McpError(INVALID_PARAMS, "params must be an object", status=400)
        if "id" in message and not _valid_id(message["id"]):
            raise McpError(INVALID_REQUEST, "a request id is a string or an integer (never null)", status=400)
        return message

    def _dispatch(
        self, project_id: str, session_id: str, headers: dict[str, str], message: dict[str, Any]
    ) -> McpReply:
        header = headers.get("mcp-protocol-version")
        if header is not None and header not in SUPPORTED_VERSIONS:  # any POST, responses too (the spec)
            raise McpError(
                UNSUPPORTED_VERSION,
                f"unsupported MCP-Protocol-Version {header!r}",
                status=400,
                data={"supported": list(SUPPORTED_VERSIONS), "requested": header},
            )
        if "method" not in message:  # a response
            self._router.live_session(project_id, session_id)
            return McpReply(202)
        method, params = message["method"], message.get("params") or {}
        version = header or DEFAULT_VERSION
        modern = version == MODERN_VERSION
        if modern:
            self._check_modern(headers, method, params)
        if "id" not in message:  # notifications: accepted, nothing to answer (but a gone session is 404)
            self._router.live_session(project_id, session_id)
            return McpReply(202)
        request_id = message["id"]
        if method not in ("tools/list", "tools/call"):
            # NotFound → 404, before anything else. tools/list and tools/call read the live session as their
            # first step (the router's NotFound is the same 404): reading it here too cost a second GetItem.
            self._router.live_session(project_id, session_id)
        if method == "initialize" and not modern:
            result = self._initialize(params)
        elif method == "ping" and not modern:
            result = {}
        elif method == "server/discover" and modern:
            result = self._discover()
        elif method == "tools/list":
            result = self._tools_list(project_id, session_id, params, modern)
        elif method == "tools/call":
            result = self._tools_call(project_id, session_id, params, version)
        else:
            raise McpError(METHOD_NOT_FOUND, f"method not found: {method}")
        if modern:
            result = {**result, "resultType": "complete"}
        return McpReply(200, {"jsonrpc": "2.0", "id": request_id, "result": result})

    @staticmethod
    def _check_modern(headers: dict[str, str], method: str, params: dict[str, Any]) -> None:
        meta = params.get("_meta")
        if (
            not isinstance(meta, dict)
            or f"{META}protocolVersion" not in meta
            or f"{META}clientCapabilities" not in meta
        ):
            raise McpError(
                INVALID_PARAMS,
                f"{MODERN_VERSION} requests carry _meta protocolVersion and clientCapabilities",
                status=400,
            )
        if meta[f"{META}protocolVersion"] != MODERN_VERSION:
            raise McpError(
                HEADER_MISMATCH, "MCP-Protocol-Version does not match _meta's protocolVersion", status=400
            )
        if headers.get("mcp-method") != method:
            raise McpError(HEADER_MISMATCH, "Mcp-Method does not match the request's method", status=400)
        if method == "tools/call" and _decoded_name(headers.get("mcp-name")) != params.get("name"):
            raise McpError(HEADER_MISMATCH, "Mcp-Name does not match the tool's name", status=400)

    # -- methods -------------------------------------------------------------------------------------------

    @staticmethod
    def _initialize(params: dict[str, Any]) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        version = requested if requested in LEGACY_VERSIONS else LEGACY_VERSIONS[-1]
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
        }

    @staticmethod
    def _discover() -> dict[str, Any]:
        return {
            "supportedVersions": list(SUPPORTED_VERSIONS),
            "capabilities": {"tools": {"listChanged": False}},
            "instructions": INSTRUCTIONS,
            "ttlMs": 0,
            "cacheScope": "private",
            "_meta": {f"{META}serverInfo": SERVER_INFO},
        }

    def _tools_list(
        self, project_id: str, session_id: str, params: dict[str, Any], modern: bool
    ) -> dict[str, Any]:
        _, tools = self._router.session_tools(project_id, session_id)  # a gone session: 404 first
        offset = _decode_cursor(params.get("cursor"))
        listed = [_mcp_tool(tool) for tool in tools[offset : offset + PAGE_SIZE]]
        listed = listed[: items_that_fit(listed)]  # a page too big for a response ends early
        result: dict[str, Any] = {"tools": listed}
        if offset + len(listed) < len(tools):
            result["nextCursor"] = _encode_cursor(offset + len(listed))
        if modern:
            result.update(ttlMs=0, cacheScope="private")  # a tool PUT is visible at once: nothing to cache
        return result

    def _tools_call(
        self, project_id: str, session_id: str, params: dict[str, Any], version: str
    ) -> dict[str, Any]:
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            self._router.live_session(project_id, session_id)  # a gone session is 404 whatever was sent
            raise McpError(INVALID_PARAMS, "tools/call needs a tool name and an arguments object")
        try:
            result = self._router.call(project_id, session_id, name, arguments)
        except NotFound as missing:
            self._router.live_session(project_id, session_id)  # the session itself gone → 404, not this
            raise McpError(INVALID_PARAMS, f"Unknown tool: {name}") from missing
        except ValidationFailed as invalid:
            if version >= ERRORS_AS_RESULTS_FROM:
                lines = "\n".join(
                    f"{'.'.join(d['loc'][2:]) or 'arguments'}: {d['msg']}" for d in invalid.details or []
                )
                return {"content": [{"type": "text", "text": f"{invalid.message}\n{lines}"}], "isError": True}
            raise McpError(INVALID_PARAMS, invalid.message, data=invalid.details) from invalid
        body: dict[str, Any] = {"content": result.content, "isError": result.is_error}
        if result.structured_content is not None:
            body["structuredContent"] = result.structured_content
        if result.output is not None:  # exit code and truncation, as the REST call's `output`
            body["_meta"] = {OUTPUT_META: result.output}
        return body


def _mcp_tool(tool: Tool) -> dict[str, Any]:
    return {"name": tool.name, "description": tool.description, "inputSchema": tool.input_schema}


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> int:
    if cursor is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(str(cursor) + "=" * (-len(str(cursor)) % 4)))["o"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise McpError(INVALID_PARAMS, "invalid cursor") from error
    if not isinstance(offset, int) or offset < 0:
        raise McpError(INVALID_PARAMS, "invalid cursor")
    return offset


def _decoded_name(header: str | None) -> str | None:
    """Mcp-Name, with the base64 sentinel form (=?base64?...?=) decoded."""
    if header and header.startswith("=?base64?") and header.endswith("?="):
        try:
            return base64.b64decode(header[len("=?base64?") : -2]).decode()
        except (binascii.Error, ValueError):
            return None
    return header


def _valid_id(value: Any) -> bool:
    """MCP narrows JSON-RPC's ids: a string or an integer, never null (nor a fraction, nor a boolean)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


@lru_cache(maxsize=64)  # one per container: per function where one process runs them all
def _endpoint_of(container: Container) -> McpEndpoint:
    return McpEndpoint(container.tool_router, container.rate_limiter)


def mcp_endpoint() -> McpEndpoint:
    """The endpoint of this function's configuration, built once from the composition root's services."""
    from session_service.runtime import container

    return _endpoint_of(container())
