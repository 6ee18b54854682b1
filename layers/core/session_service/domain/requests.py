"""The shapes clients may send (pydantic): request bodies and query parameters, and their limits.

Every field is checked here, so the services never see an invalid request (422 with the details)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)

from session_service.domain.entities import (
    BASE64_KEY_PATTERN,
    DEFAULT_COMMAND_TIMEOUT_S,
    DEFAULT_LIST_LIMIT,
    DEFAULT_MESSAGES_LIMIT,
    DEFAULT_TOKEN_TTL_S,
    MAX_MESSAGES_LIMIT,
    MAX_TOKEN_TTL_S,
    MIN_TOKEN_TTL_S,
    JsonObject,
)


def _base64_key(value: str) -> str:
    """A client's data encryption key: standard base64 of at most 1 KiB, kept exactly as given."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("must be standard base64") from error
    if not raw or len(raw) > MAX_DATA_ENCRYPTION_KEY_BYTES:
        raise ValueError(f"must decode to 1..{MAX_DATA_ENCRYPTION_KEY_BYTES} bytes")
    return value


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"

TOOL_NAME = r"^[a-z][a-z0-9_]{0,63}$"


UserId = Annotated[StrictStr, Field(min_length=1, max_length=128)]

Tag = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]*$")]

DataEncryptionKey = Annotated[
    StrictStr,
    Field(min_length=4, max_length=1368, json_schema_extra={"pattern": BASE64_KEY_PATTERN}),
    AfterValidator(_base64_key),
]

EnvName = Annotated[StrictStr, Field(pattern=ENV_NAME)]

ToolName = Annotated[StrictStr, Field(pattern=TOOL_NAME)]

ToolTag = Annotated[StrictStr, Field(min_length=1, max_length=64)]

LocalId = Annotated[StrictStr, Field(min_length=1, max_length=128)]


MAX_BODY_BYTES = 64 * 1024


MAX_LIST_LIMIT = 200


MAX_DATA_ENCRYPTION_KEY_BYTES = 1024


def _integral(value: Any) -> Any:
    """JSON has one kind of number, and JSON Schema (so the OpenAPI document) counts 5.0 as the integer 5;
    clients that only have floats send it so. 5.5, "5" and true stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# On an integer field of a request body, after its constraints (or they leave the JSON schema): strict,
# except that an integral JSON number is an integer.
INTEGRAL = BeforeValidator(_integral)


class TeardownMessage(BaseModel):
    """The body of a teardown queue message; anything else is a poison message."""

    model_config = ConfigDict(extra="ignore", strict=True, defer_build=True)

    project_id: Annotated[StrictStr, Field(pattern=r"^prj_[0-9a-z]{26}$")]
    session_id: Annotated[StrictStr, Field(pattern=r"^ses_[0-9a-z]{26}$")]
    deleted_at: StrictStr


MAX_COMMAND_TIMEOUT_S = 20  # an HTTP API integration times out at 30 s; sandbox create/resume needs the rest


NO_NUL = r"^[^\x00]*$"  # a command, its environment and paths reach execve and the kernel: no NUL byte


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    command: Annotated[StrictStr, Field(min_length=1, max_length=16_384, pattern=NO_NUL)]
    timeout_s: Annotated[StrictInt, Field(ge=1, le=MAX_COMMAND_TIMEOUT_S), INTEGRAL] = (
        DEFAULT_COMMAND_TIMEOUT_S
    )
    env: Annotated[
        dict[EnvName, Annotated[StrictStr, Field(max_length=4096, pattern=NO_NUL)]], Field(max_length=64)
    ] = Field(
        default_factory=dict,
        # pydantic states the name pattern as patternProperties, which lets any other name through.
        json_schema_extra={"additionalProperties": False},
    )
    cwd: Annotated[StrictStr, Field(min_length=1, max_length=1024, pattern=r"^/[^\x00]*$")] | None = None


MAX_AGENT_STATE_BYTES = 64 * 1024
MAX_AGENT_STATE_BODY_BYTES = MAX_AGENT_STATE_BYTES + 1024  # the state plus its envelope


def _bounded_agent_state(value: Any) -> Any:
    if len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) > MAX_AGENT_STATE_BYTES:
        raise ValueError(f"agent_state is at most {MAX_AGENT_STATE_BYTES} bytes of JSON")
    return value


# Any JSON value or an opaque string, at most 64 KiB serialized.
AgentState = Annotated[Any, AfterValidator(_bounded_agent_state)]


class PutAgentStateRequest(BaseModel):
    """PUT /v1/sessions/{session_id}/agent-state: the new state, if the stored one is still at
    `expected_version` (0 for a session whose agent has written none)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        defer_build=True,
        json_schema_extra={"examples": [{"agent_state": {"step": "running tests"}, "expected_version": 0}]},
    )

    agent_state: AgentState
    expected_version: Annotated[StrictInt, Field(ge=0), INTEGRAL]


class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    user_id: UserId
    tag: Tag | None = None
    config: JsonObject = Field(default_factory=dict)
    metadata: JsonObject = Field(default_factory=dict)
    data_encryption_key: DataEncryptionKey | None = None
    agent_state: AgentState = None


class UpdateSessionRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        defer_build=True,
        # _something_to_change, for the OpenAPI document.
        json_schema_extra={
            "anyOf": [
                {"required": [name], "properties": {name: {"type": "object"}}}
                for name in ("config", "metadata")
            ]
        },
    )

    config: JsonObject | None = None
    metadata: JsonObject | None = None
    expected_version: Annotated[StrictInt, Field(ge=1), INTEGRAL] | None = None

    @model_validator(mode="after")
    def _something_to_change(self) -> UpdateSessionRequest:
        if self.config is None and self.metadata is None:
            raise ValueError("give at least one of 'config' or 'metadata'")
        return self


class ListSessionsParams(BaseModel):
    """Query-string parameters arrive as strings; these are converted, but unknown ones are rejected."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT
    cursor: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    user_id: UserId | None = None
    changed_since: Annotated[str, Field(json_schema_extra={"format": "date-time"})] | None = None
    include_deleted: bool = False
    active: bool = False  # sessions active (a message or an execute) in the last 15 minutes

    @model_validator(mode="after")
    def _active_alone(self) -> ListSessionsParams:
        if self.active and (
            self.user_id is not None or self.changed_since is not None or self.include_deleted
        ):
            raise ValueError("active=true cannot be combined with user_id, changed_since or include_deleted")
        return self


class CreateTokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    ttl_s: Annotated[StrictInt, Field(ge=MIN_TOKEN_TTL_S, le=MAX_TOKEN_TTL_S), INTEGRAL] = DEFAULT_TOKEN_TTL_S


MAX_TOOL_SEARCH_LIMIT = 50


DEFAULT_TOOL_SEARCH_LIMIT = 10


class PutToolRequest(BaseModel):
    """A catalog tool: `command` runs in the session's sandbox with the call's arguments as JSON in the
    environment variable TOOL_ARGUMENTS (never interpolated into the command)."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    description: Annotated[StrictStr, Field(min_length=1, max_length=2000)]
    input_schema: JsonObject
    command: Annotated[StrictStr, Field(min_length=1, max_length=16_384, pattern=NO_NUL)]
    tags: Annotated[list[ToolTag], Field(max_length=20)] = Field(default_factory=list)
    timeout_s: Annotated[StrictInt, Field(ge=1, le=MAX_COMMAND_TIMEOUT_S), INTEGRAL] = (
        DEFAULT_COMMAND_TIMEOUT_S
    )


class ListToolsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    limit: Annotated[int, Field(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT
    cursor: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class SearchToolsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    query: Annotated[str, Field(max_length=1000)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_TOOL_SEARCH_LIMIT)] = DEFAULT_TOOL_SEARCH_LIMIT
    cursor: Annotated[str, Field(min_length=1, max_length=256)] | None = None


class CallToolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    arguments: JsonObject = Field(default_factory=dict)


MAX_MESSAGE_CONTENT_BYTES = 64 * 1024


MAX_MESSAGE_BODY_BYTES = MAX_MESSAGE_CONTENT_BYTES + 1024  # the content plus its envelope


class AppendMessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)

    content: Any = Field(...)  # any JSON value, at most 64 KiB serialized (checked by the service)
    local_id: LocalId | None = None


class ListMessagesParams(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    after_seq: Annotated[int, Field(ge=0)] | None = None
    before_seq: Annotated[int, Field(ge=1)] | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_MESSAGES_LIMIT)] = DEFAULT_MESSAGES_LIMIT

    @model_validator(mode="after")
    def _one_direction(self) -> ListMessagesParams:
        if self.after_seq is not None and self.before_seq is not None:
            raise ValueError("give after_seq or before_seq, not both")
        return self
