"""The service layer: what a session operation means, independent of HTTP and of the vendors behind it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from session_service.domain import clock, ids
from session_service.domain.entities import ListQuery, Page, Session, Tombstone
from session_service.domain.errors import (
    Conflict,
    NotFound,
    TagTaken,
    ValidationFailed,
    VersionConflict,
    WriteConflict,
)
from session_service.domain.output import items_that_fit
from session_service.domain.ports import ContentCipher, ResponseCache, SessionStore, TeardownQueue
from session_service.domain.requests import (
    CreateSessionRequest,
    ListSessionsParams,
    PutAgentStateRequest,
    UpdateSessionRequest,
)
from session_service.observability import annotate, count
from session_service.services import activity, liveness
from session_service.services.content_keys import KeyDestroyed, PlainContent

# Optimistic retries for races that a re-read resolves (a tag claim changing hands, a concurrent PATCH).
_MAX_ATTEMPTS = 5


class SessionService:
    def __init__(
        self,
        store: SessionStore,
        cache: ResponseCache,
        queue: TeardownQueue | None = None,
        *,
        cipher: ContentCipher | None = None,
        tombstone_retention_days: int = 30,
        new_id: Callable[[], str] = ids.new_session_id,
        now: Callable[[], str] = clock.utc_now_iso,
    ) -> None:
        self._store = store
        self._cache = cache
        self._queue = queue
        self._cipher: ContentCipher = cipher if cipher is not None else PlainContent()
        self._retention_seconds = tombstone_retention_days * 86_400
        self._new_id = new_id
        self._now = now

    def create(self, project_id: str, request: CreateSessionRequest) -> tuple[Session, bool]:
        """Create a session; with a tag, return the project's live session with that tag instead.

        Returns (session, created). Concurrent creates with one tag yield one session: the tag claim is
        taken in the same transaction as the session, so exactly one of them wins.
        """
        for _ in range(_MAX_ATTEMPTS):
            dead_owner: str | None = None
            if request.tag is not None:
                owner_id = self._store.tag_owner(project_id, request.tag)
                if owner_id is not None:
                    owner = self._store.get(project_id, owner_id)
                    if owner is not None and not owner.is_deleted:
                        try:
                            return self._open(owner), False
                        except NotFound:
                            pass  # its key is gone (a backup restored after teardown): as good as deleted
                    dead_owner = owner_id
            at = self._now()
            session_id = self._new_id()
            wrapped_key = self._cipher.new_session_key(project_id, session_id)
            dek = request.data_encryption_key
            session = Session(
                project_id=project_id,
                session_id=session_id,
                user_id=request.user_id,
                tag=request.tag,
                config=request.config,
                metadata=request.metadata,
                data_encryption_key=dek,
                sealed_metadata=self._cipher.seal(project_id, session_id, "metadata", request.metadata),
                sealed_data_key=None
                if dek is None
                else self._cipher.seal(project_id, session_id, "data_encryption_key", dek),
                agent_state=request.agent_state,
                agent_state_version=0 if "agent_state" not in request.model_fields_set else 1,
                sealed_agent_state=None
                if "agent_state" not in request.model_fields_set
                else self._cipher.seal(project_id, session_id, "agent_state", request.agent_state),
                version=1,
                created_at=at,
                updated_at=at,
            )
            try:
                self._store.create(session, replaces_tag_owner=dead_owner, wrapped_key=wrapped_key)
            except TagTaken:
                continue
            return session, True
        raise Conflict("the tag changed hands repeatedly while creating; retry the request")

    def get(self, project_id: str, session_id: str) -> dict:
        """The session's public form, read through the cache. Deleted or foreign sessions are NotFound."""
        liveness.require_id(session_id)
        cached = self._cache.get(project_id, session_id)
        if cached.tombstone:
            raise NotFound(liveness.NOT_FOUND)
        if cached.body is not None:
            return cached.body
        as_of = clock.now_ms()  # before the read: the fill is only as fresh as the moment the read began
        session = self._load_live(project_id, session_id)
        self._cache.fill(session, as_of)
        return session.to_api()

    def list(self, project_id: str, params: ListSessionsParams) -> Page:
        if params.changed_since is not None:
            try:
                since = clock.iso(clock.parse_iso(params.changed_since))
            except (ValueError, OverflowError) as error:
                raise ValidationFailed(
                    "changed_since must be an ISO-8601 time",
                    details=[{"loc": ["query", "changed_since"], "msg": str(error)}],
                ) from error
        else:
            since = None
        query = ListQuery(
            limit=params.limit,
            cursor=params.cursor,
            user_id=params.user_id,
            changed_since=since,
            # A sync client asking what changed must learn of deletions too.
            include_deleted=params.include_deleted or since is not None,
            active_since=activity.active_since(clock.parse_iso(self._now())) if params.active else None,
        )
        page = self._store.list(project_id, query)
        live = [session for session in page.items if not session.is_deleted]
        self._cipher.preload(project_id, (session.session_id for session in live))
        opened: list[tuple[Session, str | None]] = []
        for index, session in enumerate(page.items):
            try:
                opened.append((self._open(session), page.cursors[index] if page.cursors else None))
            except NotFound:
                continue  # deleted (its key destroyed) between the Query and now
        fit = items_that_fit([session.to_api() for session, _ in opened])
        if fit < len(opened):  # the page would not fit a response: it ends early, and says where it ended
            return Page(items=[session for session, _ in opened[:fit]], next_cursor=opened[fit - 1][1])
        return Page(items=[session for session, _ in opened], next_cursor=page.next_cursor)

    def delete(self, project_id: str, session_id: str) -> Tombstone:
        """Tombstone the session: one conditional write, then the cache tombstone and the enqueue.

        Only the write can fail the request (503). If Redis does not take the cache tombstone, the cache
        epoch makes every older cached copy untrusted before this returns, and the stream-driven
        invalidator writes the tombstone once Redis answers. A failed enqueue is logged and counted; the
        sweeper finds the pending tombstone.
        """
        liveness.require_id(session_id)
        deleted_at = self._now()
        expires_at = int(clock.parse_iso(deleted_at).timestamp()) + self._retention_seconds
        token = uuid.uuid4().hex
        written = self._store.tombstone(project_id, session_id, deleted_at, expires_at, request_token=token)
        liveness.require_written(written, session_id)
        tombstone = Tombstone(project_id, session_id, deleted_at)
        self._cache.tombstone(project_id, session_id)
        if self._queue is None or not self._queue.send(tombstone):
            count("TeardownEnqueueFailures")
            annotate("teardown_enqueue_failed", session_id)
        return tombstone

    def update(self, project_id: str, session_id: str, request: UpdateSessionRequest) -> Session:
        """Apply a PATCH. Given fields replace the stored ones wholesale; the version goes up by one.

        When it returns, the cache holds the new version (a fill by a reader that read the old version is
        refused by the cache's version guard), or, if Redis failed, no older cached version is trusted.
        """
        liveness.require_id(session_id)
        for _ in range(_MAX_ATTEMPTS):
            current = self._load_live(project_id, session_id)
            if request.expected_version is not None and request.expected_version != current.version:
                raise VersionConflict(
                    f"session is at version {current.version}, not {request.expected_version}",
                    details=[{"current_version": current.version}],
                )
            changes: dict = {"version": current.version + 1, "updated_at": self._now()}
            if request.config is not None:
                changes["config"] = request.config
            if request.metadata is not None:
                changes["metadata"] = request.metadata
                changes["sealed_metadata"] = self._cipher.seal(
                    project_id, session_id, "metadata", request.metadata
                )
            updated = current.evolve(**changes)
            try:
                self._store.update(
                    updated, previous_version=current.version, config_changed=request.config is not None
                )
            except WriteConflict:
                continue  # re-read: deleted → 404, version moved → 409 or another optimistic round
            self._cache.publish(updated)
            return updated
        raise Conflict("the session kept changing during the update; retry the request")

    def put_agent_state(self, project_id: str, session_id: str, request: PutAgentStateRequest) -> int:
        """Replace the agent's state if it is still at `request.expected_version`; the new version.

        One conditional write and no read first (the state is sealed under the session's key, which a warm
        process holds); `version` does not move, so a concurrent PATCH of config or metadata never conflicts
        with it. Only a refused write reads, to answer 404 (gone) or 409 (the current version).
        """
        liveness.require_id(session_id)
        try:
            sealed = self._cipher.seal(project_id, session_id, "agent_state", request.agent_state)
        except KeyDestroyed as error:  # no key for this project's session: unknown, foreign or torn down
            raise NotFound(liveness.NOT_FOUND) from error
        written = self._store.put_agent_state(
            project_id, session_id, sealed, expected_version=request.expected_version, at=self._now()
        )
        if written is None:
            current = self._load_live(project_id, session_id)  # gone → 404
            raise VersionConflict(
                f"agent_state is at version {current.agent_state_version}, not {request.expected_version}",
                details=[{"current_version": current.agent_state_version}],
            )
        self._cache.publish(self._open(written))
        activity.record_activity(self._store, written)
        return written.agent_state_version

    def _load_live(self, project_id: str, session_id: str) -> Session:
        live = liveness.require_live(
            self._store, project_id, session_id, on_deleted=self._cache.remember_deleted
        )
        return self._open(live)

    def _open(self, session: Session) -> Session:
        """The session with its sealed fields opened. NotFound when its key is gone (torn down)."""
        if session.is_deleted:
            return session
        project_id, session_id = session.project_id, session.session_id
        try:
            metadata = (
                {}
                if session.sealed_metadata is None
                else self._cipher.open(project_id, session_id, "metadata", session.sealed_metadata)
            )
            agent_state = (
                None
                if session.sealed_agent_state is None
                else self._cipher.open(project_id, session_id, "agent_state", session.sealed_agent_state)
            )
            dek = (
                None
                if session.sealed_data_key is None
                else self._cipher.open(project_id, session_id, "data_encryption_key", session.sealed_data_key)
            )
        except KeyDestroyed as error:
            raise NotFound(liveness.NOT_FOUND) from error
        return session.evolve(metadata=metadata, data_encryption_key=dek, agent_state=agent_state)
