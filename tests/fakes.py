"""In-memory fakes of the ports, for unit tests of the service layer (no sockets).

They keep the same conditional semantics as the real adapters (tag claims, version guards, the cache's
refusal to overwrite a tombstone or a newer version), so service logic is tested against real rules.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace

from session_service.domain import clock, keys
from session_service.domain.entities import (
    ApiKeyRecord,
    CommandResult,
    ListQuery,
    Page,
    Project,
    SandboxListing,
    Session,
    TokenRecord,
    Tombstone,
    UsageRecord,
)
from session_service.domain.errors import (
    DependencyUnavailable,
    SandboxGone,
    SandboxRateLimited,
    SandboxUnavailable,
    TagTaken,
    WriteConflict,
)
from session_service.domain.ports import CACHE_MISS, CacheLookup

P1, P2 = (
    "prj_01aaaaaaaaaaaaaaaaaaaaaaaa",
    "prj_01bbbbbbbbbbbbbbbbbbbbbbbb",
)  # two projects for isolation tests


class FakeSessionStore:
    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str], Session] = {}
        self.tags: dict[tuple[str, str], str] = {}
        self.config_history: list[tuple[str, str, int, dict]] = []
        self.usage: list[UsageRecord] = []
        self.before_attach: list = []  # callables run just before the fence write (to interleave a delete)
        self._lock = threading.Lock()

    def attach_sandbox(
        self, project_id: str, session_id: str, sandbox_id: str, *, replaces: str | None
    ) -> bool:
        for hook in self.before_attach:
            hook()
        with self._lock:
            current = self.sessions.get((project_id, session_id))
            if current is None or current.is_deleted or current.sandbox_id != replaces:
                return False
            self.sessions[(project_id, session_id)] = replace(current, sandbox_id=sandbox_id)
            return True

    def record_usage(self, usage: UsageRecord) -> None:
        self.usage.append(usage)

    def get(self, project_id: str, session_id: str) -> Session | None:
        return self.sessions.get((project_id, session_id))

    def tag_owner(self, project_id: str, tag: str) -> str | None:
        return self.tags.get((project_id, tag))

    def create(
        self, session: Session, *, replaces_tag_owner: str | None = None, wrapped_key: bytes | None = None
    ) -> None:
        with self._lock:
            if session.tag is not None:
                if self.tags.get((session.project_id, session.tag)) != replaces_tag_owner:
                    raise TagTaken()
                self.tags[(session.project_id, session.tag)] = session.session_id
            self.sessions[(session.project_id, session.session_id)] = session
            self.config_history.append(
                (session.project_id, session.session_id, session.version, session.config)
            )

    def update(self, session: Session, *, previous_version: int, config_changed: bool) -> None:
        with self._lock:
            current = self.sessions.get((session.project_id, session.session_id))
            if current is None or current.is_deleted or current.version != previous_version:
                raise WriteConflict()
            self.sessions[(session.project_id, session.session_id)] = session
            if config_changed:
                self.config_history.append(
                    (session.project_id, session.session_id, session.version, session.config)
                )

    def list(self, project_id: str, query: ListQuery) -> Page:
        live = [
            s
            for (p, _), s in self.sessions.items()
            if p == project_id and (query.include_deleted or not s.is_deleted)
        ]
        if query.user_id is not None:
            live = [s for s in live if s.user_id == query.user_id]
        if query.active_since is not None:  # the by_activity index: active_key >= active_since, newest first
            live = [s for s in live if s.last_active_at and _active_key(s) >= query.active_since]
            live.sort(key=_active_key, reverse=True)
        else:
            live.sort(key=lambda s: s.session_id, reverse=True)
        start = 0
        if query.cursor:
            start = next(i for i, s in enumerate(live) if s.session_id == query.cursor) + 1
        items = live[start : start + query.limit]
        more = start + query.limit < len(live)
        cursors = tuple(s.session_id for s in items)
        return Page(items=items, next_cursor=cursors[-1] if more and items else None, cursors=cursors)

    def mark_deleted(self, project_id: str, session_id: str, at: str) -> None:
        key = (project_id, session_id)
        self.sessions[key] = replace(self.sessions[key], deleted_at=at)

    def tombstone(
        self, project_id: str, session_id: str, deleted_at: str, expires_at: int, *, request_token: str
    ) -> bool:
        with self._lock:
            current = self.sessions.get((project_id, session_id))
            if current is None or current.is_deleted:
                return False
            self.sessions[(project_id, session_id)] = replace(
                current, deleted_at=deleted_at, updated_at=deleted_at, teardown_state="pending"
            )
            return True

    def record_teardown(
        self, project_id: str, session_id: str, *, killed: int, done_at: str | None, messages_purged: int = 0
    ) -> None:
        current = self.sessions[(project_id, session_id)]
        changes: dict = {
            "sandboxes_killed": current.sandboxes_killed + killed,
            "messages_purged": current.messages_purged + messages_purged,
        }
        if done_at is not None:
            changes.update(
                teardown_state="done",
                teardown_completed_at=done_at,
                config={},
                metadata=None,
                sealed_metadata=None,
                sealed_data_key=None,
            )
        self.sessions[(project_id, session_id)] = replace(current, **changes)

    def record_key_destroyed(self, project_id: str, session_id: str, at: str) -> None:
        current = self.sessions[(project_id, session_id)]
        if current.key_destroyed_at is None:
            self.sessions[(project_id, session_id)] = replace(current, key_destroyed_at=at)

    def touch_activity(self, project_id: str, session_id: str, at: str, not_since: str) -> None:
        with self._lock:
            current = self.sessions.get((project_id, session_id))
            if current is None or current.is_deleted:
                return
            if current.last_active_at is None or current.last_active_at < not_since:
                self.sessions[(project_id, session_id)] = replace(current, last_active_at=at)

    def pending_teardowns(self, deleted_before: str, limit: int) -> list[Tombstone]:
        pending = [
            Tombstone(s.project_id, s.session_id, s.deleted_at)
            for s in self.sessions.values()
            if s.deleted_at is not None and s.teardown_state == "pending" and s.deleted_at < deleted_before
        ]
        return pending[:limit]


def _active_key(session: Session) -> str:
    return keys.updated_key(str(session.last_active_at), session.session_id)


class FakeQueue:
    def __init__(self) -> None:
        self.sent: list[Tombstone] = []
        self.delays: list[int] = []
        self.down = False

    def send(self, tombstone: Tombstone, *, delay_seconds: int = 0) -> bool:
        if self.down:
            return False
        self.sent.append(tombstone)
        self.delays.append(delay_seconds)
        return True


class FakeSandboxes:
    """Sandboxes by id → (metadata, state); `fail` maps an id to the exception its kill raises (n times)."""

    def __init__(self) -> None:
        self.sandboxes: dict[str, tuple[dict[str, str], str]] = {}
        self.fail: dict[str, list[Exception]] = {}
        self.kill_calls: list[str] = []
        self.runs: list[tuple[str, str]] = []
        self.created = 0
        self.down = False
        self.late = False  # creates go through, but the caller hears a failure (its call timed out)
        self.keys: dict[str, str] = {}  # idempotency key → the sandbox created with it
        self._lock = threading.Lock()

    def add(self, sandbox_id: str, project_id: str, session_id: str, state: str = "running") -> None:
        self.sandboxes[sandbox_id] = ({"project_id": project_id, "session_id": session_id}, state)

    def list_session_sandboxes(self, project_id: str, session_id: str, max_items: int) -> SandboxListing:
        wanted = {"project_id": project_id, "session_id": session_id}
        found = sorted(i for i, (meta, _) in self.sandboxes.items() if meta == wanted)
        return SandboxListing(found[:max_items], truncated=len(found) > max_items)

    def create(
        self, metadata: dict[str, str], *, template: str, timeout_s: int, idempotency_key: str | None = None
    ) -> str:
        if self.down:
            raise SandboxUnavailable("down")
        with self._lock:
            earlier = self.keys.get(idempotency_key or "")
            if earlier in self.sandboxes:
                sandbox_id = str(earlier)
            else:
                self.created += 1
                sandbox_id = f"sbx{self.created:03d}"
                self.sandboxes[sandbox_id] = (dict(metadata), "running")
                if idempotency_key:
                    self.keys[idempotency_key] = sandbox_id
        if self.late:
            raise SandboxUnavailable("timed out (created all the same)")
        return sandbox_id

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
        if self.down:
            raise SandboxUnavailable("down")
        if sandbox_id not in self.sandboxes:
            raise SandboxGone(sandbox_id)
        meta, _ = self.sandboxes[sandbox_id]
        self.sandboxes[sandbox_id] = (meta, "running")  # running a command resumes a paused sandbox
        self.runs.append((sandbox_id, command))
        return CommandResult(stdout=f"ran {command}\n", stderr="", exit_code=0)

    def kill(self, sandbox_id: str) -> bool:
        with self._lock:
            self.kill_calls.append(sandbox_id)
            pending = self.fail.get(sandbox_id)
            if pending:
                raise pending.pop(0)
            return self.sandboxes.pop(sandbox_id, None) is not None


def rate_limited() -> Exception:
    return SandboxRateLimited("429")


def unavailable() -> Exception:
    return SandboxUnavailable("500")


class FakeCache:
    """The ResponseCache contract in memory: fills are version-guarded and never replace a tombstone; a
    writer's invalidation either lands or (cache down) makes every body filled before it untrusted, which
    is what the cache epoch gives the real adapter."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], tuple[int, int, dict] | str] = {}
        self.down = False
        self.epoch = 0  # bodies filled as of an earlier time are not served

    def get(self, project_id: str, session_id: str) -> CacheLookup:
        if self.down:
            return CACHE_MISS
        entry = self.entries.get((project_id, session_id))
        if entry is None:
            return CACHE_MISS
        if entry == "!":
            return CacheLookup(tombstone=True)
        assert isinstance(entry, tuple)
        return CacheLookup(body=entry[2]) if entry[1] >= self.epoch else CACHE_MISS

    def body(self, project_id: str, session_id: str) -> tuple[int, dict] | str | None:
        """(version, body) or "!" as stored, for assertions."""
        entry = self.entries.get((project_id, session_id))
        return entry if entry is None or isinstance(entry, str) else (entry[0], entry[2])

    def fill(self, session: Session, as_of_ms: int) -> bool:
        if self.down:
            return False
        key = (session.project_id, session.session_id)
        current = self.entries.get(key)
        if current == "!" or (isinstance(current, tuple) and current[0] > session.version):
            return True
        if isinstance(current, tuple) and current[0] == session.version and current[1] >= as_of_ms:
            return True
        self.entries[key] = (session.version, as_of_ms, session.to_api())
        return True

    def publish(self, session: Session) -> None:
        if not self.fill(session, clock.now_ms()):
            self.epoch = clock.now_ms() + 1

    def tombstone(self, project_id: str, session_id: str) -> bool:
        if self.down:
            self.epoch = clock.now_ms() + 1
            return False
        self.entries[(project_id, session_id)] = "!"
        return True

    def remember_deleted(self, project_id: str, session_id: str) -> None:
        if not self.down:
            self.entries[(project_id, session_id)] = "!"


class FakeEpochStore:
    """The cache epoch's DynamoDB items in memory; `down` makes every call fail as DynamoDB would."""

    def __init__(self, copies: int = 4) -> None:
        self.values = [0] * copies
        self.reads = 0
        self.writes = 0
        self.down = False

    def read(self, copy: int) -> int:
        if self.down:
            raise DependencyUnavailable("down")
        self.reads += 1
        return self.values[copy]

    def raise_to(self, epoch_ms: int) -> None:
        if self.down:
            raise DependencyUnavailable("down")
        self.writes += 1
        self.values = [max(value, epoch_ms) for value in self.values]


class FakeKeyStore:
    def __init__(self) -> None:
        self.records: dict[str, ApiKeyRecord] = {}

    def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        return self.records.get(key_hash)

    def put(self, record: ApiKeyRecord) -> None:
        self.records[record.key_hash] = record

    def list_for_project(self, project_id: str) -> list[ApiKeyRecord]:
        return [r for r in self.records.values() if r.project_id == project_id]

    def revoke(self, project_id: str, key_id: str, revoked_at: str) -> bool:
        for key_hash, record in self.records.items():
            if record.project_id == project_id and record.key_id == key_id:
                self.records[key_hash] = replace(record, revoked_at=revoked_at)
                return True
        return False


class FakeProjectStore:
    def __init__(self) -> None:
        self.projects: dict[str, Project] = {}

    def create(self, project: Project) -> None:
        self.projects[project.project_id] = project

    def get(self, project_id: str) -> Project | None:
        return self.projects.get(project_id)

    def set_limits(self, project_id: str, per_minute: int | None, compute_per_minute: int | None) -> bool:
        if project_id not in self.projects:
            return False
        self.projects[project_id] = replace(
            self.projects[project_id],
            rate_limit_per_minute=per_minute,
            compute_rate_limit_per_minute=compute_per_minute,
        )
        return True


class FakeTokenStore:
    """Session tokens in memory; `live` is the set of (project_id, session_id) a token may be issued for."""

    def __init__(self, live: set[tuple[str, str]] | None = None) -> None:
        self.live = live or set()
        self.records: list[TokenRecord] = []

    def issue(self, record: TokenRecord) -> bool:
        if (record.project_id, record.session_id) not in self.live:
            return False
        self.records.append(record)
        return True

    def get_by_hash(self, token_hash: str) -> TokenRecord | None:
        return next((r for r in self.records if r.token_hash == token_hash), None)

    def purge_session(self, project_id: str, session_id: str) -> int:
        kept = [r for r in self.records if (r.project_id, r.session_id) != (project_id, session_id)]
        purged, self.records = len(self.records) - len(kept), kept
        return purged


class FakeContentKeyStore:
    """The keys table in memory, counting calls as DynamoDB would bill them."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}
        self.calls: list[str] = []

    def project_key(self, project_id: str) -> bytes | None:
        self.calls.append("project_key")
        return self.items.get(f"project#{project_id}")

    def add_project_key(self, project_id: str, wrapped: bytes) -> bool:
        self.calls.append("add_project_key")
        return self.items.setdefault(f"project#{project_id}", wrapped) == wrapped

    def put_session_key(self, project_id: str, session_id: str, wrapped: bytes) -> None:
        """What the session's create transaction does."""
        self.items[f"session#{project_id}#{session_id}"] = wrapped

    def session_keys(self, project_id: str, session_ids: list[str]) -> dict[str, bytes]:
        self.calls.append("session_keys")
        found = {sid: self.items.get(f"session#{project_id}#{sid}") for sid in session_ids}
        return {sid: wrapped for sid, wrapped in found.items() if wrapped is not None}

    def destroy_session_key(self, project_id: str, session_id: str) -> None:
        self.calls.append("destroy_session_key")
        self.items.pop(f"session#{project_id}#{session_id}", None)


class FakeMasterKey:
    """KMS in memory: a wrapped key is an opaque handle bound to its project (the encryption context)."""

    def __init__(self) -> None:
        self.keys: dict[bytes, tuple[str, bytes]] = {}
        self.calls: list[str] = []

    def generate(self, project_id: str) -> tuple[bytes, bytes]:
        self.calls.append("generate")
        plaintext, handle = os.urandom(32), os.urandom(16)
        self.keys[handle] = (project_id, plaintext)
        return plaintext, handle

    def unwrap(self, wrapped: bytes, project_id: str) -> bytes:
        self.calls.append("unwrap")
        owner, plaintext = self.keys[wrapped]
        if owner != project_id:
            raise ValueError("encryption context mismatch")
        return plaintext
