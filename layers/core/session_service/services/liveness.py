"""The one definition of "this session is live for this caller": the product's core promise, that after
DELETE every path of a session is 404, lives here and nowhere else.

A session is live for a caller when it exists, belongs to the caller's project, and has no tombstone
(`deleted_at`). A session token reaches its own session only. Every session path goes through one of:
- `require_live` — paths that read the session: sessions, workbench and tool calls (REST and MCP),
  messages, idempotency replays;
- `require_written` — paths that must not read first (issuing a token, a feed `$connect`, the DELETE's
  tombstone): the store makes its write conditional on the session being live (the adapters' one
  condition, `session_service.adapters.dynamodb.tables.live_session`; the project is in the item's key)
  and reports whether it was written;
- `token_may_reach` — the edge's check that a session token stays on its session's paths.
tests/integration/test_liveness_guard.py calls every session operation of the API and fails if one does
not pass through here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

from session_service.domain import ids
from session_service.domain.entities import Session
from session_service.domain.errors import NotFound
from session_service.domain.ports import SessionStore

NOT_FOUND = "session not found"


def is_live(session: Session | None, project_id: str) -> TypeGuard[Session]:
    return session is not None and session.project_id == project_id and not session.is_deleted


def require_id(session_id: str) -> None:
    """A path that cannot name a session (not our id format) is 404 before anything is read."""
    if not ids.is_session_id(session_id):
        raise NotFound(NOT_FOUND)


def require_live(
    store: SessionStore,
    project_id: str,
    session_id: str,
    *,
    on_deleted: Callable[[str, str], None] | None = None,
) -> Session:
    """The live session, or NotFound (unknown, another project's, deleted). `on_deleted` hears of a
    tombstone read (the session service remembers it in the cache)."""
    require_id(session_id)
    session = store.get(project_id, session_id)
    if not is_live(session, project_id):
        if session is not None and session.is_deleted and on_deleted is not None:
            on_deleted(project_id, session_id)
        raise NotFound(NOT_FOUND)
    return session


def require_written(written: bool, session_id: str) -> None:
    """The outcome of a write to `session_id` conditioned on its being live: False means it was not."""
    if not written:
        raise NotFound(NOT_FOUND)


def token_may_reach(token_session: str, path_session: str | None) -> bool:
    """A session token's principal may use its own session's paths and nothing else."""
    return path_session == token_session
