"""A session's conversation: messages appended with gap-free sequence numbers, idempotent by local_id, and
paged both ways. They live outside the session item (the messages table), so the DELETE stays one write
whatever a session holds; teardown purges them.

An append racing a DELETE either lands before the tombstone (and teardown purges it) or answers 404: the
store writes it in one transaction with a check that the session is live.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

from session_service.domain import clock, ids
from session_service.domain.entities import Message, Session
from session_service.domain.errors import NotFound, PayloadTooLarge
from session_service.domain.output import items_that_fit
from session_service.domain.ports import ContentCipher, MessageStore, SessionStore
from session_service.domain.requests import (
    MAX_MESSAGE_CONTENT_BYTES,
    AppendMessageRequest,
    ListMessagesParams,
)
from session_service.services import liveness
from session_service.services.activity import record_activity
from session_service.services.content_keys import KeyDestroyed, PlainContent


def new_message_id() -> str:
    return f"msg_{ids.ulid()}"


class MessageService:
    def __init__(
        self,
        sessions: SessionStore,
        messages: MessageStore,
        *,
        cipher: ContentCipher | None = None,
        new_id: Callable[[], str] = new_message_id,
        now: Callable[[], str] = clock.utc_now_iso,
    ) -> None:
        self._sessions = sessions
        self._messages = messages
        self._cipher: ContentCipher = cipher if cipher is not None else PlainContent()
        self._new_id = new_id
        self._now = now

    def append(self, project_id: str, session_id: str, request: AppendMessageRequest) -> tuple[Message, bool]:
        """(the message, created). The same local_id again returns the original with created=False."""
        size = len(json.dumps(request.content, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_MESSAGE_CONTENT_BYTES:
            raise PayloadTooLarge(f"content is {size} bytes serialized; at most {MAX_MESSAGE_CONTENT_BYTES}")
        session = self._live(project_id, session_id)
        message_id = self._new_id()
        try:
            sealed = self._cipher.seal(project_id, session_id, f"message:{message_id}", request.content)
        except KeyDestroyed as error:
            raise NotFound(liveness.NOT_FOUND) from error
        message, created = self._messages.append(
            project_id, session_id, sealed, request.local_id, message_id=message_id, at=self._now()
        )
        if created:
            record_activity(self._sessions, session)
            return replace(message, content=request.content, sealed_content=None), True
        return self._open(message), False

    def page(
        self, project_id: str, session_id: str, params: ListMessagesParams
    ) -> tuple[list[Message], bool]:
        self._live(project_id, session_id)
        messages, more = self._messages.page(
            project_id,
            session_id,
            after_seq=params.after_seq,
            before_seq=params.before_seq,
            limit=params.limit,
        )
        opened = [self._open(message) for message in messages]
        fit = items_that_fit([message.to_api() for message in opened])
        # A page too big for a response ends early; has_more, and the last seq resumes it either way.
        return opened[:fit], more or fit < len(opened)

    def _open(self, message: Message) -> Message:
        """NotFound when the session's key is gone (torn down, or a restored backup of a torn-down one)."""
        if message.sealed_content is None:
            return message
        try:
            content = self._cipher.open(
                message.project_id,
                message.session_id,
                f"message:{message.message_id}",
                message.sealed_content,
            )
        except KeyDestroyed as error:
            raise NotFound(liveness.NOT_FOUND) from error
        return replace(message, content=content, sealed_content=None)

    def _live(self, project_id: str, session_id: str) -> Session:
        return liveness.require_live(self._sessions, project_id, session_id)
