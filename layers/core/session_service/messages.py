"""A session's conversation: messages appended with gap-free sequence numbers, idempotent by local_id, and
paged both ways. They live outside the session item (the messages table), so the DELETE stays one write
whatever a session holds; teardown purges them.

An append racing a DELETE either lands before the tombstone (and teardown purges it) or answers 404: the
store writes it in one transaction with a check that the session is live.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from session_service import clock, ids
from session_service.activity import record_activity
from session_service.errors import NotFound, PayloadTooLarge
from session_service.models import (
    MAX_MESSAGE_CONTENT_BYTES,
    AppendMessageRequest,
    ListMessagesParams,
    Message,
    Session,
)
from session_service.ports import MessageStore, SessionStore


def new_message_id() -> str:
    return f"msg_{ids.ulid()}"


class MessageService:
    def __init__(
        self,
        sessions: SessionStore,
        messages: MessageStore,
        *,
        new_id: Callable[[], str] = new_message_id,
        now: Callable[[], str] = clock.utc_now_iso,
    ) -> None:
        self._sessions = sessions
        self._messages = messages
        self._new_id = new_id
        self._now = now

    def append(self, project_id: str, session_id: str, request: AppendMessageRequest) -> tuple[Message, bool]:
        """(the message, created). The same local_id again returns the original with created=False."""
        size = len(json.dumps(request.content, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_MESSAGE_CONTENT_BYTES:
            raise PayloadTooLarge(f"content is {size} bytes serialized; at most {MAX_MESSAGE_CONTENT_BYTES}")
        session = self._live(project_id, session_id)
        message, created = self._messages.append(
            project_id,
            session_id,
            request.content,
            request.local_id,
            message_id=self._new_id(),
            at=self._now(),
        )
        if created:
            record_activity(self._sessions, session)
        return message, created

    def page(
        self, project_id: str, session_id: str, params: ListMessagesParams
    ) -> tuple[list[Message], bool]:
        self._live(project_id, session_id)
        return self._messages.page(
            project_id,
            session_id,
            after_seq=params.after_seq,
            before_seq=params.before_seq,
            limit=params.limit,
        )

    def _live(self, project_id: str, session_id: str) -> Session:
        session = self._sessions.get(project_id, session_id) if ids.is_session_id(session_id) else None
        if session is None or session.is_deleted:
            raise NotFound("session not found")
        return session
