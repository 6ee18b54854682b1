"""Every HTTP operation of the API in one table: its route, who may call it, what it takes and answers,
and whether it accepts an `Idempotency-Key` or spends compute (the tighter rate limit).

Its readers, so that they cannot drift apart:
- session_service.edges.openapi generates docs/openapi.json from it (tests compare it with template.yaml's
routes); - request-path code can look an operation up by its API Gateway route key (`operation_for`);
- tests/integration/test_edge_contract.py calls every operation and checks that the running code's rate-limit
  bucket and Idempotency-Key handling are the `compute` and `idempotent` flags here;
- the generated-case tests (schemathesis, the two-tenant suite) read the document made from it.

Cheap to import on the request path: dataclasses, the request models (every route already imports
session_service.domain.requests) and the response TypedDicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel

from session_service.domain.requests import (
    AppendMessageRequest,
    CallToolRequest,
    CreateSessionRequest,
    CreateTokenRequest,
    ExecuteRequest,
    ListMessagesParams,
    ListSessionsParams,
    ListToolsParams,
    PutAgentStateRequest,
    PutToolRequest,
    SearchToolsParams,
    UpdateSessionRequest,
)
from session_service.edges import responses as r

# Who may call an operation. SESSION routes take a project's API key or a token of that very session.
API_KEY: Final = "api_key"
SESSION: Final = "session"
PUBLIC: Final = "public"

# The edge's contract (rate limits and idempotency keys): names the document and the code share.
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH: Final = 255
IDEMPOTENT_REPLAYED_HEADER: Final = "Idempotent-Replayed"
IDEMPOTENCY_TTL_HOURS: Final = 24
IDEMPOTENCY_KEY_REUSED: Final = "idempotency_key_reused"  # same key, another body: 422
IDEMPOTENCY_IN_PROGRESS: Final = "idempotency_in_progress"  # same key while the first runs: 409
RATE_LIMITED: Final = "rate_limited"  # 429
RATE_LIMIT_HEADERS: Final = ("Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str  # as documented; the template's route may be ANY (route_method)
    path: str  # the template's path: /v1/sessions/{session_id}
    summary: str
    tag: str
    auth: str
    responses: dict[int, Any]  # success status -> response type (None: no body)
    body: type[BaseModel] | Any = None  # a request model (or a TypedDict for the MCP message)
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # statuses beyond those every operation of its kind can give
    idempotent: bool = False  # accepts Idempotency-Key
    compute: bool = False  # spends sandbox compute: the tighter rate limit
    route_method: str | None = None  # the template's method when it is not `method` (ANY)
    links: dict[int, dict[str, dict[str, str]]] = field(default_factory=dict)  # status -> op -> params
    example: dict[str, Any] | None = None  # a valid request body (the reference page, the tenant tests)
    description: str = ""

    @property
    def route_key(self) -> str:
        """API Gateway's routeKey for the route serving this operation (`event["routeKey"]`)."""
        return f"{self.route_method or self.method} {self.path}"


_SESSION_LINKS: dict[str, dict[str, str]] = {
    op: {"session_id": "$response.body#/id"}
    for op in (
        "getSession",
        "updateSession",
        "deleteSession",
        "createSessionToken",
        "appendMessage",
        "listMessages",
        "listSessionTools",
    )
}
# A tool every session has (a link parameter may be a constant): calls reach a live session's tools.
_SESSION_LINKS["callTool"] = {"session_id": "$response.body#/id", "tool_name": "list_files"}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "createSession",
        "POST",
        "/v1/sessions",
        "Create a session (201), or return the project's live session with this tag (200)",
        "sessions",
        API_KEY,
        {201: r.Session, 200: r.Session},
        body=CreateSessionRequest,
        errors=(404, 409),  # 404: an Idempotency-Key replay of a create whose session is deleted since
        idempotent=True,
        links={201: _SESSION_LINKS, 200: _SESSION_LINKS},
        example={"user_id": "user-42", "tag": "support-7", "config": {"model": "m1"}},
    ),
    Operation(
        "listSessions",
        "GET",
        "/v1/sessions",
        "The project's sessions, newest first (or a user's, the recently active, those changed since)",
        "sessions",
        API_KEY,
        {200: r.SessionPage},
        query=ListSessionsParams,
        errors=(400,),
    ),
    Operation(
        "getSession",
        "GET",
        "/v1/sessions/{session_id}",
        "One session (404 once deleted)",
        "sessions",
        SESSION,
        {200: r.Session},
    ),
    Operation(
        "updateSession",
        "PATCH",
        "/v1/sessions/{session_id}",
        "Replace the session's config and/or metadata (409 when expected_version is not current)",
        "sessions",
        API_KEY,
        {200: r.Session},
        body=UpdateSessionRequest,
        errors=(409,),
        example={"metadata": {"channel": "email"}, "expected_version": 1},
    ),
    Operation(
        "putAgentState",
        "PUT",
        "/v1/sessions/{session_id}/agent-state",
        "Replace the agent's state (409 when expected_version is not current); version does not move",
        "sessions",
        SESSION,
        {200: r.AgentStateWritten},
        body=PutAgentStateRequest,
        errors=(409,),
        example={"agent_state": {"step": "running tests"}, "expected_version": 0},
        description=(
            "The running agent's own document beside the metadata, with its own version: one conditional "
            "write, no read first. A session token of this session may call it. Feed: "
            "`session.agent_state_updated`."
        ),
    ),
    Operation(
        "deleteSession",
        "DELETE",
        "/v1/sessions/{session_id}",
        "Delete the session: 404 on every route at once; its sandboxes are torn down",
        "sessions",
        API_KEY,
        {200: r.SessionDeleted},
        links={200: {"getSession": {"session_id": "$request.path.session_id"}}},
    ),
    Operation(
        "execute",
        "POST",
        "/v1/sessions/{session_id}/execute",
        "Run a command in the session's sandbox (a non-zero exit is a 200)",
        "sessions",
        SESSION,
        {200: r.Execution},
        body=ExecuteRequest,
        idempotent=True,
        compute=True,
        example={"command": "echo hello", "timeout_s": 10},
    ),
    Operation(
        "createSessionToken",
        "POST",
        "/v1/sessions/{session_id}/tokens",
        "A session token for an agent: that session's routes only (shown once)",
        "sessions",
        API_KEY,
        {201: r.SessionToken},
        body=CreateTokenRequest,
        example={"ttl_s": 3600},
    ),
    Operation(
        "listSessionTools",
        "GET",
        "/v1/sessions/{session_id}/tools",
        "The session's tools, ranked by relevance to a query (or all of them by name)",
        "tools",
        SESSION,
        {200: r.AgentToolPage},
        query=SearchToolsParams,
        errors=(400,),
    ),
    Operation(
        "callTool",
        "POST",
        "/v1/sessions/{session_id}/tools/{tool_name}/call",
        "Call one of the session's tools (its own failure is a 200 with is_error)",
        "tools",
        SESSION,
        {200: r.ToolResult},
        body=CallToolRequest,
        idempotent=True,
        compute=True,
        example={"arguments": {"command": "echo hello"}},
    ),
    Operation(
        "appendMessage",
        "POST",
        "/v1/sessions/{session_id}/messages",
        "Append to the conversation (201), or return the message with this local_id (200)",
        "messages",
        SESSION,
        {201: r.Message, 200: r.Message},
        body=AppendMessageRequest,
        errors=(409,),
        idempotent=True,
        example={"content": {"role": "user", "text": "hi"}, "local_id": "c-1"},
    ),
    Operation(
        "listMessages",
        "GET",
        "/v1/sessions/{session_id}/messages",
        "Page the conversation: after_seq ascending, before_seq newest first",
        "messages",
        SESSION,
        {200: r.MessagePage},
        query=ListMessagesParams,
    ),
    Operation(
        "mcp",
        "POST",
        "/v1/sessions/{session_id}/mcp",
        "The session's MCP endpoint (streamable HTTP, stateless, JSON responses only)",
        "mcp",
        SESSION,
        {200: r.JsonRpcResponse, 202: None},
        body=r.JsonRpcMessage,
        errors=(400,),
        compute=True,  # tools/call runs in the sandbox; the limiter tells it from the other methods
        route_method="ANY",  # so that GET and DELETE reach the function and get MCP's 405 (Allow: POST)
        description=(
            "One JSON-RPC message per POST. GET and DELETE answer 405 with `Allow: POST` (no event stream, "
            "no session to end: the session is in the path). Every request on an unknown, another project's "
            "or a deleted session is 404 with a JSON-RPC error."
        ),
        example={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    ),
    Operation(
        "listTools",
        "GET",
        "/v1/tools",
        "The project's catalog tools by name",
        "tools",
        API_KEY,
        {200: r.CatalogPage},
        query=ListToolsParams,
        errors=(400,),
    ),
    Operation(
        "putTool",
        "PUT",
        "/v1/tools/{tool_name}",
        "Create (201) or replace (200) a catalog tool",
        "tools",
        API_KEY,
        {201: r.CatalogTool, 200: r.CatalogTool},
        body=PutToolRequest,
        errors=(409,),
        links={
            status: {op: {"tool_name": "$request.path.tool_name"} for op in ("getTool", "deleteTool")}
            for status in (200, 201)
        },
        example={
            "description": "Count the words of a text",
            "input_schema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
            "command": 'python3 -c "import json,os; '
            "print(len(json.loads(os.environ['TOOL_ARGUMENTS'])['text'].split()))\"",
        },
    ),
    Operation(
        "getTool",
        "GET",
        "/v1/tools/{tool_name}",
        "One catalog tool",
        "tools",
        API_KEY,
        {200: r.CatalogTool},
    ),
    Operation(
        "deleteTool",
        "DELETE",
        "/v1/tools/{tool_name}",
        "Remove a catalog tool (sessions stop seeing it at once)",
        "tools",
        API_KEY,
        {200: r.ToolDeleted},
    ),
    Operation(
        "getOpenApi",
        "GET",
        "/openapi.json",
        "This document",
        "meta",
        PUBLIC,
        {200: r.JsonObject},
    ),
)

_BY_ROUTE: dict[str, Operation] = {op.route_key: op for op in OPERATIONS}


def operation_for(route_key: str) -> Operation | None:
    """The operation a request is, from API Gateway's `routeKey` (`event["routeKey"]`; the MCP route's is
    `ANY /v1/sessions/{session_id}/mcp` whatever the method)."""
    return _BY_ROUTE.get(route_key)
