"""The interfaces the service layer knows. Adapters implement them; unit tests hand in fakes."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from session_service.domain.entities import (
    ApiKeyRecord,
    BucketTake,
    CommandResult,
    FeedConnection,
    FileContent,
    FileEntry,
    ListQuery,
    Message,
    Page,
    Project,
    SandboxListing,
    Session,
    TokenRecord,
    Tombstone,
    Tool,
    UsageRecord,
)

if TYPE_CHECKING:
    from session_service.domain.events import DomainEvent


class SessionStore(Protocol):
    def get(self, project_id: str, session_id: str) -> Session | None: ...

    def create(
        self, session: Session, *, replaces_tag_owner: str | None = None, wrapped_key: bytes | None = None
    ) -> None:
        """Store a new session (its first config-history entry, and its wrapped content key) atomically.

        With a tag, the tag claim is taken in the same transaction: absent, or still pointing at
        `replaces_tag_owner` (a dead owner). Raises TagTaken when the claim is not as expected.
        """

    def tag_owner(self, project_id: str, tag: str) -> str | None: ...

    def put_agent_state(
        self, project_id: str, session_id: str, sealed: bytes, *, expected_version: int, at: str
    ) -> Session | None:
        """The agent's state replaced in one conditional write (live, still at `expected_version`): the
        stored session after it, or None when the condition failed."""

    def update(self, session: Session, *, previous_version: int, config_changed: bool) -> None:
        """Replace a live session's mutable fields if its version is still `previous_version`.

        Appends a config-history entry in the same transaction when the config changed.
        Raises WriteConflict when the version moved on or the session was deleted.
        """

    def tombstone(
        self, project_id: str, session_id: str, deleted_at: str, expires_at: int, *, request_token: str
    ) -> bool:
        """The DELETE: one conditional write that sets deleted_at unless already set (by another request
        than `request_token`). False: no such live session in this project (unknown, foreign, deleted)."""

    def record_teardown(
        self, project_id: str, session_id: str, *, killed: int, done_at: str | None, messages_purged: int = 0
    ) -> None:
        """Add to the session's counts; with `done_at`, mark teardown done and purge the content."""

    def record_key_destroyed(self, project_id: str, session_id: str, at: str) -> None:
        """Record (once) that teardown destroyed the session's content key."""

    def touch_activity(self, project_id: str, session_id: str, at: str, not_since: str) -> None:
        """Record activity at `at` unless recorded at or after `not_since`; never on a deleted session."""

    def pending_teardowns(self, deleted_before: str, limit: int) -> list[Tombstone]:
        """Tombstones whose teardown is still pending (through the sparse index, never a Scan)."""

    def attach_sandbox(
        self, project_id: str, session_id: str, sandbox_id: str, *, replaces: str | None
    ) -> bool:
        """The fence: record the session's sandbox only if the session is not deleted and its sandbox is
        still `replaces` (None: none yet). False when either no longer holds."""

    def record_usage(self, usage: UsageRecord) -> None: ...

    def list(self, project_id: str, query: ListQuery) -> Page: ...


class TeardownQueue(Protocol):
    def send(self, tombstone: Tombstone, *, delay_seconds: int = 0) -> bool:
        """Enqueue a teardown. Never raises: False when the queue could not be reached (logged, counted)."""


class SandboxProvider(Protocol):
    def list_session_sandboxes(self, project_id: str, session_id: str, max_items: int) -> SandboxListing:
        """Running AND paused sandboxes whose metadata names this session. Raises SandboxUnavailable."""

    def kill(self, sandbox_id: str) -> bool:
        """Kill by id (never connect: that resumes a paused sandbox). False when it was already gone.
        Raises SandboxRateLimited on 429, SandboxUnavailable on any other failure."""

    def create(
        self, metadata: dict[str, str], *, template: str, timeout_s: int, idempotency_key: str | None = None
    ) -> str:
        """A new sandbox that pauses (not dies) when idle past `timeout_s`; a create with the key of an
        earlier one that still exists returns that sandbox. Raises SandboxUnavailable."""

    def run(
        self,
        sandbox_id: str,
        command: str,
        *,
        timeout_s: int,
        env: dict[str, str],
        cwd: str | None,
        sandbox_timeout_s: int,
    ) -> CommandResult:
        """Run in the sandbox, resuming it if paused. Raises SandboxGone, SandboxUnavailable."""

    def read_file(self, sandbox_id: str, path: str, *, max_bytes: int, sandbox_timeout_s: int) -> FileContent:
        """The file's text (its first `max_bytes`, not-UTF-8 bytes replaced). Raises SandboxFileError (no
        such file, a directory), SandboxGone, SandboxUnavailable."""

    def write_file(self, sandbox_id: str, path: str, content: str, *, sandbox_timeout_s: int) -> FileEntry:
        """Create or overwrite the file (and its parent directories). Raises as read_file."""

    def list_files(self, sandbox_id: str, path: str, *, sandbox_timeout_s: int) -> list[FileEntry]:
        """The directory's entries. Raises as read_file."""


class ResponseCache(Protocol):
    """Read-through cache of session reads. Never raises: a cache failure is a miss (logged, counted).

    It serves only what it can vouch for: a body filled before the latest failed invalidation is a miss
    (see session_service.services.cache_epoch). Writers use `publish`/`tombstone`, which either reach Redis
    or make the older cached state untrusted before they return.
    """

    def get(self, project_id: str, session_id: str) -> CacheLookup: ...

    def fill(self, session: Session, as_of_ms: int) -> None:
        """A reader's fill, best effort: `session` as read from the database at or after `as_of_ms`.
        Refused when the cache holds a tombstone or a newer version."""

    def publish(self, session: Session) -> None:
        """A writer's fill after its commit: the new version replaces any older one, or, if Redis fails,
        every older cached body becomes untrusted."""

    def tombstone(self, project_id: str, session_id: str) -> bool:
        """A writer's delete: make the key unservable (a marker no fill can overwrite). If Redis fails, every
        older cached body becomes untrusted instead; False then (logged, counted)."""

    def remember_deleted(self, project_id: str, session_id: str) -> None:
        """A reader found the session deleted in the database: cache that, best effort."""


class CacheLookup:
    """Outcome of a cache read: a hit carries the session's public dict; a tombstone says 'deleted'."""

    __slots__ = ("body", "tombstone")

    def __init__(self, body: dict | None = None, tombstone: bool = False) -> None:
        self.body = body
        self.tombstone = tombstone


CACHE_MISS = CacheLookup()


class CacheEpochStore(Protocol):
    """Where the cache epoch lives (DynamoDB): `copies` items, each its own partition."""

    def read(self, copy: int) -> int:
        """The epoch in milliseconds (0 if never raised). Raises DependencyUnavailable."""

    def raise_to(self, epoch_ms: int) -> None:
        """Raise every copy to at least `epoch_ms` (never lowers one). Raises DependencyUnavailable."""


class CacheInvalidator(Protocol):
    """The stream-driven side: writes that must reach Redis. Raises CacheUnavailable so the change is
    retried until Redis takes it."""

    def tombstone(self, project_id: str, session_id: str) -> None: ...

    def floor(self, project_id: str, session_id: str, version: int) -> None:
        """No version older than `version` may be served or filled from now on."""


class KeyStore(Protocol):
    def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    def put(self, record: ApiKeyRecord) -> None: ...

    def list_for_project(self, project_id: str) -> list[ApiKeyRecord]: ...

    def revoke(self, project_id: str, key_id: str, revoked_at: str) -> bool: ...


class TokenStore(Protocol):
    def issue(self, record: TokenRecord) -> bool:
        """Store the token if its session is live (one transaction with a check on the session item).
        False when the session is unknown or deleted."""

    def get_by_hash(self, token_hash: str) -> TokenRecord | None: ...

    def purge_session(self, project_id: str, session_id: str) -> int:
        """Delete every token of a session (teardown); returns how many were deleted."""


class MessageStore(Protocol):
    """A session's messages, in its own partition, numbered 1, 2, 3, ... without gaps."""

    def append(
        self,
        project_id: str,
        session_id: str,
        sealed_content: bytes,
        local_id: str | None,
        *,
        message_id: str,
        at: str,
    ) -> tuple[Message, bool]:
        """Append with the next seq, unless `local_id` was seen: then (the original, False). Only while the
        session is live (one transaction with a check on it): NotFound otherwise. Returned sealed."""

    def page(
        self, project_id: str, session_id: str, *, after_seq: int | None, before_seq: int | None, limit: int
    ) -> tuple[list[Message], bool]:
        """Ascending after `after_seq`, or descending before `before_seq`; and whether more exist."""

    def purge(self, project_id: str, session_id: str, limit: int) -> tuple[int, bool]:
        """Delete up to `limit` of the session's items, oldest first; (messages deleted, all gone)."""


class ConnectionStore(Protocol):
    def put(self, connection: FeedConnection) -> bool:
        """False when the connection's session (a token's) is unknown or deleted: nothing is written."""

    def delete(self, connection_id: str) -> None: ...

    def of_project(self, project_id: str) -> list[FeedConnection]:
        """The connections opened with the project's API keys (they hear every event of the project)."""

    def of_session(self, project_id: str, session_id: str) -> list[FeedConnection]:
        """The connections opened with the session's tokens (closed when the session is deleted)."""


class ConnectionPusher(Protocol):
    def send(self, connection_id: str, frame: str) -> bool:
        """False when the connection is gone (410); raises FeedUnavailable when the send may be retried."""

    def close(self, connection_id: str) -> None: ...


class EventPublisher(Protocol):
    def publish(self, events: list[DomainEvent]) -> None:
        """Put the events on the bus; raises FeedUnavailable when any was not taken."""


class ToolStore(Protocol):
    """A project's tool catalog. Every change also moves the catalog's version, so readers can keep the
    whole catalog in memory and re-read it only when it changed."""

    def put(self, project_id: str, tool: Tool) -> bool:
        """Create or replace; True when it was created."""

    def get(self, project_id: str, name: str) -> Tool | None: ...

    def delete(self, project_id: str, name: str) -> bool:
        """False when there was no such tool."""

    def page(self, project_id: str, limit: int, after: str | None) -> tuple[list[Tool], str | None]:
        """Tools by name after `after`; the name to continue after, or None at the end."""

    def catalog(self, project_id: str) -> list[Tool]:
        """Every tool of the project, as of now (read-your-writes: a tool PUT before is in it)."""


class ProjectStore(Protocol):
    def create(self, project: Project) -> None: ...

    def get(self, project_id: str) -> Project | None: ...

    def set_limits(self, project_id: str, per_minute: int | None, compute_per_minute: int | None) -> bool:
        """Replace the project's own rate limits (None: the stack's default); False if no such project."""


class ContentKeyStore(Protocol):
    """The keys table (no point-in-time recovery, no backups): project keys wrapped by KMS, session keys
    wrapped by their project's key. A session's key is written in its create transaction (SessionStore)."""

    def project_key(self, project_id: str) -> bytes | None: ...

    def add_project_key(self, project_id: str, wrapped: bytes) -> bool:
        """Store the project's first key; False when another process stored one first."""

    def session_keys(self, project_id: str, session_ids: list[str]) -> dict[str, bytes]:
        """The wrapped keys of those sessions that have one (strongly consistent)."""

    def destroy_session_key(self, project_id: str, session_id: str) -> None:
        """Delete the session's key; nothing happens if it is already gone."""


class MasterKey(Protocol):
    """The stack's KMS key: makes and unwraps project keys (the project id is the encryption context)."""

    def generate(self, project_id: str) -> tuple[bytes, bytes]:
        """(plaintext, wrapped) of a new 256-bit key. Raises DependencyUnavailable."""

    def unwrap(self, wrapped: bytes, project_id: str) -> bytes:
        """Raises DependencyUnavailable."""


class ContentCipher(Protocol):
    """Seals and opens a session's content (session_service.services.content_keys)."""

    encrypted: bool

    def new_session_key(self, project_id: str, session_id: str) -> bytes | None: ...

    def preload(self, project_id: str, session_ids: Iterable[str]) -> None: ...

    def seal(self, project_id: str, session_id: str, purpose: str, value: Any) -> bytes: ...

    def open(self, project_id: str, session_id: str, purpose: str, sealed: bytes) -> Any:
        """Raises KeyDestroyed or ContentUnreadable."""


class TokenBuckets(Protocol):
    """Token buckets, each refilled continuously to `limit` a minute, updated atomically in one call."""

    def take(self, project_id: str, credential: str, buckets: list[tuple[str, int]]) -> BucketTake | None:
        """One token from every bucket `(name, limit per minute)` of the credential, or from none of them
        when any is empty. None when the store could not answer (the caller fails open)."""


# What an idempotent route runs once: it returns (body, status), which the idempotency store keeps.
Work = Callable[[], tuple[dict[str, Any], int]]


class Aead(Protocol):
    """One authenticated-encryption key: seal binds `aad`; open raises ContentUnreadable when it fails."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, sealed: bytes, aad: bytes) -> bytes: ...


class CacheEpochGuard(Protocol):
    """What the response cache asks of the cache epoch (session_service.services.cache_epoch.CacheEpoch)."""

    def current(self) -> int | None: ...

    def suspect(self) -> None: ...

    def invalidate_before(self, committed_ms: int) -> bool: ...
