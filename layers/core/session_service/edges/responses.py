"""The JSON bodies the API answers with, as types: the OpenAPI document's response schemas are generated
from these (session_service.edges.openapi), and schemathesis checks every answer against them.

TypedDicts rather than pydantic models, because session_service.edges.operations (read by the request path)
refers to them and a TypedDict costs nothing to define. The generator closes every object
(`additionalProperties: false`), so a field added to a `to_api` without being added here fails the
generated-case tests instead of going undocumented.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

# pydantic reads TypedDicts from typing_extensions only, before Python 3.12 (already imported by pydantic).
from typing_extensions import TypedDict

JsonObject = dict[str, Any]


class ErrorDetail(TypedDict):
    """Where a request broke the contract: `loc` names the part (body, query, path) and the field."""

    loc: NotRequired[list[str]]
    msg: NotRequired[str]
    type: NotRequired[str]
    current_version: NotRequired[int]


class ErrorBody(TypedDict):
    code: str
    message: str
    details: NotRequired[list[ErrorDetail]]


class Error(TypedDict):
    """Every error this service answers, whatever the route (session_service.edges.api.error_response)."""

    error: ErrorBody


class GatewayError(TypedDict):
    """API Gateway's own answers (no credentials at all, throttled, too large, no such route)."""

    message: str


class Session(TypedDict):
    id: str
    user_id: str
    tag: str | None
    config: JsonObject
    metadata: JsonObject
    data_encryption_key: str | None  # the client's own key, as it gave it (stored sealed)
    agent_state: Any  # the agent's own state (any JSON value; stored sealed), with its own version
    agent_state_version: int  # 0 until the agent first writes it
    version: int
    created_at: str
    updated_at: str
    last_active_at: str | None


class AgentStateWritten(TypedDict):
    agent_state_version: int


class Teardown(TypedDict):
    state: Literal["pending", "done"] | None
    completed_at: str | None
    sandboxes_killed: int
    messages_purged: int
    key_destroyed_at: str | None  # the session's content key destroyed (crypto-shredding)


class DeletedSession(TypedDict):
    """A tombstone, as listings with include_deleted or changed_since show it: its content is purged."""

    id: str
    user_id: str
    tag: str | None
    version: int
    created_at: str
    updated_at: str
    last_active_at: str | None
    deleted: Literal[True]
    deleted_at: str
    teardown: Teardown


class SessionPage(TypedDict):
    items: list[Session | DeletedSession]
    next_cursor: str | None


class SessionDeleted(TypedDict):
    id: str
    deleted: Literal[True]
    deleted_at: str


class CommandOutput(TypedDict):
    """How a command ended, and per stream the bytes it printed and whether the text returned is cut short:
    an execute's whole result with its output, a command tool's `output` (catalog tools and run_command,
    whose `content` holds stdout, or stderr when the call failed)."""

    exit_code: int | None
    timed_out: bool
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_bytes: int
    stderr_bytes: int


class Execution(CommandOutput):
    stdout: str
    stderr: str
    sandbox_id: str
    duration_ms: int


class SessionToken(TypedDict):
    token: str
    token_id: str
    expires_at: str


class CatalogTool(TypedDict):
    name: str
    description: str
    input_schema: JsonObject
    command: str | None
    tags: list[str]
    timeout_s: int
    created_at: str | None
    updated_at: str | None


class CatalogPage(TypedDict):
    items: list[CatalogTool]
    next_cursor: str | None


class ToolDeleted(TypedDict):
    name: str
    deleted: Literal[True]


class AgentTool(TypedDict):
    name: str
    description: str
    input_schema: JsonObject
    tags: list[str]
    score: NotRequired[float]


class AgentToolPage(TypedDict):
    items: list[AgentTool]
    next_cursor: str | None


class TextContent(TypedDict):
    type: Literal["text"]
    text: str


class ToolResult(TypedDict):
    content: list[TextContent]
    is_error: bool
    structured_content: NotRequired[JsonObject]
    output: NotRequired[CommandOutput]
    sandbox_id: str | None
    duration_ms: int


class Message(TypedDict):
    id: str
    seq: int
    local_id: str | None
    content: Any
    created_at: str


class MessagePage(TypedDict):
    items: list[Message]
    has_more: bool


class JsonRpcError(TypedDict):
    code: int
    message: str
    data: NotRequired[Any]


class JsonRpcResponse(TypedDict):
    """What the MCP endpoint answers: a JSON-RPC response (a result or an error)."""

    jsonrpc: Literal["2.0"]
    id: str | int | None
    result: NotRequired[JsonObject]
    error: NotRequired[JsonRpcError]


class JsonRpcMessage(TypedDict):
    """What a client POSTs to the MCP endpoint: one JSON-RPC request, notification or response."""

    jsonrpc: Literal["2.0"]
    id: NotRequired[str | int]  # MCP: never null
    method: NotRequired[str]
    params: NotRequired[JsonObject]
    result: NotRequired[Any]
    error: NotRequired[Any]
