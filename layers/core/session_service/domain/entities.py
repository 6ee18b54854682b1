"""The domain's entities and values: sessions, tools, messages, tokens and what the adapters hand back.

Plain dataclasses, no validation: what comes from a client is checked by session_service.domain.requests
first."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_LIST_LIMIT = 50
DEFAULT_COMMAND_TIMEOUT_S = 10


JsonObject = dict[str, Any]


_B64 = "[A-Za-z0-9+/]"


# _base64_key as a pattern, for the OpenAPI document (standard base64, padded, 1..1024 bytes decoded).
BASE64_KEY_PATTERN = (
    rf"^(?:{_B64}{{4}}){{0,340}}(?:{_B64}{{4}}|{_B64}{{3}}=|{_B64}{{2}}==)$"  # up to 1023 bytes
    rf"|^(?:{_B64}{{4}}){{341}}{_B64}{{2}}==$"  # exactly 1024
)


@dataclass(frozen=True)
class Session:
    project_id: str
    session_id: str
    user_id: str
    tag: str | None
    config: JsonObject
    # None while sealed: the store returns `sealed_metadata`, and the service opens it before serving.
    metadata: JsonObject | None
    version: int
    created_at: str
    updated_at: str
    deleted_at: str | None = None
    teardown_state: str | None = None
    teardown_completed_at: str | None = None
    sandboxes_killed: int = 0
    sandbox_id: str | None = None
    last_active_at: str | None = None
    messages_purged: int = 0
    # The client's own key for its end-to-end encrypted content (opaque, never interpreted); None while
    # sealed or when the client gave none.
    data_encryption_key: str | None = None
    sealed_metadata: bytes | None = None
    sealed_data_key: bytes | None = None
    key_destroyed_at: str | None = None
    # What the running agent keeps beside the metadata (any JSON value), with its own version: 0 until the
    # first write, so an agent's writes never conflict with a person's PATCH (issue 28). None while sealed.
    agent_state: Any = None
    agent_state_version: int = 0
    sealed_agent_state: bytes | None = None

    @property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def cache_version(self) -> int:
        """What the response cache orders bodies by: every write that changes the public body raises
        `version` or `agent_state_version` by exactly one, and each writer's body is an exact state (a PATCH
        is conditioned on both counters it read; an agent-state write publishes what DynamoDB returned), so
        one sum names one state."""
        return self.version + self.agent_state_version

    def to_api(self) -> dict[str, Any]:
        """The public representation. The project is implied by the caller's key and never echoed.

        A deleted session (only ever listed, never served) is a tombstone: its content is purged by
        teardown, so it shows when it was deleted and how far teardown got instead.
        """
        if self.metadata is None and self.deleted_at is None:
            raise RuntimeError("the session's content is still sealed: the service opens it before serving")
        body: dict[str, Any] = {
            "id": self.session_id,
            "user_id": self.user_id,
            "tag": self.tag,
            "config": self.config,
            "metadata": self.metadata,
            "data_encryption_key": self.data_encryption_key,
            "agent_state": self.agent_state,
            "agent_state_version": self.agent_state_version,
            "version": self.version,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "last_active_at": self.last_active_at,
        }
        if self.deleted_at is not None:
            del body["config"], body["metadata"], body["data_encryption_key"]
            del body["agent_state"], body["agent_state_version"]
            body["deleted"] = True
            body["deleted_at"] = self.deleted_at
            body["teardown"] = {
                "state": self.teardown_state,
                "completed_at": self.teardown_completed_at,
                "sandboxes_killed": self.sandboxes_killed,
                "messages_purged": self.messages_purged,
                "key_destroyed_at": self.key_destroyed_at,
            }
        return body

    def evolve(self, **changes: Any) -> Session:
        return replace(self, **changes)


@dataclass(frozen=True)
class Page:
    items: list[Session]
    next_cursor: str | None
    # The cursor that resumes after each item, so that a page can be cut short (output.items_that_fit).
    cursors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ListQuery:
    limit: int = DEFAULT_LIST_LIMIT
    cursor: str | None = None
    user_id: str | None = None
    changed_since: str | None = None
    include_deleted: bool = False
    active_since: str | None = None  # only sessions active at or after this time, most recent first


@dataclass(frozen=True)
class Tombstone:
    """What a DELETE returns and what the teardown message carries."""

    project_id: str
    session_id: str
    deleted_at: str

    def to_api(self) -> dict[str, Any]:
        return {"id": self.session_id, "deleted": True, "deleted_at": self.deleted_at}

    def to_message(self) -> dict[str, str]:
        return {"project_id": self.project_id, "session_id": self.session_id, "deleted_at": self.deleted_at}


@dataclass(frozen=True)
class SandboxListing:
    sandbox_ids: list[str]
    truncated: bool  # more sandboxes exist than were listed


@dataclass(frozen=True)
class TeardownReport:
    outcome: str  # "done" | "continued" | "skipped" | "strays" (a live session's strays killed)
    sandboxes_killed: int = 0


def sandbox_metadata(project_id: str, session_id: str) -> dict[str, str]:
    """Exactly the metadata a session's sandboxes carry and teardown finds them by."""
    return {"project_id": project_id, "session_id": session_id}


@dataclass(frozen=True)
class CommandResult:
    """What a command printed (each stream capped while it streamed: session_service.domain.output) and how it
    ended. The byte counts are of everything it printed, kept or not."""

    stdout: str
    stderr: str
    exit_code: int | None  # None when the command was stopped at its timeout
    timed_out: bool = False
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    stdout_bytes: int | None = None  # None: the same as the kept text's UTF-8 length
    stderr_bytes: int | None = None


@dataclass(frozen=True)
class ExecutionResult:
    sandbox_id: str
    result: CommandResult
    duration_ms: int

    def to_api(self) -> dict[str, Any]:
        result = self.result
        return {
            "stdout": result.stdout,
            "stderr": result.stderr,
            "exit_code": result.exit_code,
            "timed_out": result.timed_out,
            "stdout_truncated": result.stdout_truncated,
            "stderr_truncated": result.stderr_truncated,
            "stdout_bytes": _byte_count(result.stdout, result.stdout_bytes),
            "stderr_bytes": _byte_count(result.stderr, result.stderr_bytes),
            "sandbox_id": self.sandbox_id,
            "duration_ms": self.duration_ms,
        }


def _byte_count(text: str, counted: int | None) -> int:
    return len(text.encode()) if counted is None else counted


@dataclass(frozen=True)
class UsageRecord:
    project_id: str
    session_id: str
    sandbox_id: str
    at: str
    duration_ms: int
    exit_code: int | None
    timed_out: bool
    tool: str | None = None  # the tool whose call ran it (None: an execute)


@dataclass(frozen=True)
class Project:
    project_id: str
    name: str
    created_at: str
    # The project's own rate limits (session-admin set-limits); None: the stack's defaults.
    rate_limit_per_minute: int | None = None
    compute_rate_limit_per_minute: int | None = None


@dataclass(frozen=True)
class BucketLevel:
    """A token bucket after a request: whole tokens left, and milliseconds until the next token and until
    the bucket is full again."""

    limit: int
    remaining: int
    ms_to_next: int
    ms_to_full: int


@dataclass(frozen=True)
class BucketTake:
    """The outcome of one atomic take: allowed only if every bucket had a token (then each gave one)."""

    allowed: bool
    levels: list[BucketLevel]


@dataclass(frozen=True)
class ApiKeyRecord:
    key_hash: str
    key_id: str
    project_id: str
    created_at: str
    revoked_at: str | None = None

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    project_id: str
    api_key: str = field(repr=False)


MIN_TOKEN_TTL_S, MAX_TOKEN_TTL_S, DEFAULT_TOKEN_TTL_S = 60, 86_400, 3_600


@dataclass(frozen=True)
class TokenRecord:
    """A session token as stored: only the SHA-256 of the token, never the token itself."""

    token_hash: str
    token_id: str
    project_id: str
    session_id: str
    created_at: str
    expires_at: int  # epoch seconds (also the table's TTL attribute)


@dataclass(frozen=True)
class IssuedToken:
    token: str = field(repr=False)
    token_id: str = ""
    expires_at: str = ""

    def to_api(self) -> dict[str, Any]:
        return {"token": self.token, "token_id": self.token_id, "expires_at": self.expires_at}


@dataclass(frozen=True)
class Principal:
    """Who a request is: a project (API key), or one session of a project (session token)."""

    project_id: str
    session_id: str | None = None  # set for a session token: the only session it may reach
    # Which credential it is ("key:<key_id>" or "token:<token_id>"; ids are public): its rate-limit buckets.
    credential: str = ""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: JsonObject
    tags: tuple[str, ...] = ()
    command: str | None = None  # None for a built-in tool
    timeout_s: int = DEFAULT_COMMAND_TIMEOUT_S
    created_at: str | None = None
    updated_at: str | None = None

    @property
    def builtin(self) -> bool:
        return self.command is None

    def to_api(self) -> dict[str, Any]:
        """The catalog's view (project routes)."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "command": self.command,
            "tags": list(self.tags),
            "timeout_s": self.timeout_s,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_agent(self, score: float | None = None) -> dict[str, Any]:
        """What an agent sees of a tool (search, MCP): no command, no bookkeeping."""
        body: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
            "tags": list(self.tags),
        }
        if score is not None:
            body["score"] = round(score, 4)
        return body


@dataclass(frozen=True)
class ToolResult:
    """A tool call's result, in the MCP shape: a tool's own failure is a result with is_error, never an
    HTTP error, so that an agent can read it and react."""

    content: list[dict[str, Any]]
    is_error: bool
    structured_content: dict[str, Any] | None = None
    sandbox_id: str | None = None
    duration_ms: int = 0
    # A command's facts (exit code, timed out, per stream: bytes printed and whether the text is cut), for
    # the tools that run one: the content alone cannot say that output was truncated.
    output: dict[str, Any] | None = None

    def to_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"content": self.content, "is_error": self.is_error}
        if self.structured_content is not None:
            body["structured_content"] = self.structured_content
        if self.output is not None:
            body["output"] = self.output
        body["sandbox_id"] = self.sandbox_id
        body["duration_ms"] = self.duration_ms
        return body


@dataclass(frozen=True)
class FileEntry:
    name: str
    path: str
    type: str  # "file" | "dir" | "symlink"
    size: int


@dataclass(frozen=True)
class FileContent:
    text: str
    size: int  # bytes in the sandbox
    truncated: bool


class SandboxFileError(Exception):
    """Adapter outcome: the sandbox refused a file operation (no such file, a directory, a bad path). A
    tool's failure, reported to the agent as a result, not an HTTP error."""


MAX_MESSAGES_LIMIT, DEFAULT_MESSAGES_LIMIT = 200, 50


@dataclass(frozen=True)
class Message:
    project_id: str
    session_id: str
    message_id: str
    seq: int
    content: Any  # any JSON value (an opaque string for client-side encrypted content); None while sealed
    created_at: str
    local_id: str | None = None
    sealed_content: bytes | None = None

    def to_api(self) -> dict[str, Any]:
        if self.sealed_content is not None:
            raise RuntimeError("the message is still sealed: the service opens it before serving")
        return {
            "id": self.message_id,
            "seq": self.seq,
            "local_id": self.local_id,
            "content": self.content,
            "created_at": self.created_at,
        }


FEED_CONNECTION_TTL_S = 2 * 3600 + 600  # API Gateway ends a WebSocket after 2 h; rows outlive it a little


@dataclass(frozen=True)
class FeedConnection:
    """A WebSocket connection to the live feed: a project's (API key) or one session's (session token)."""

    connection_id: str
    project_id: str
    session_id: str | None
    connected_at: str
    expires_at: int
