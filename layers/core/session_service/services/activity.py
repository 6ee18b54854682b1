"""When a session was last active (a message appended, a command run): `last_active_at`, written at most
once a minute per session so that a busy session costs one extra write a minute, not one per request, and
listed by `GET /v1/sessions?active=true` (the last ACTIVE_WINDOW, most recent first)."""

from __future__ import annotations

from datetime import datetime, timedelta

from session_service.domain import clock
from session_service.domain.entities import Session
from session_service.domain.ports import SessionStore

RESOLUTION = timedelta(seconds=60)
ACTIVE_WINDOW = timedelta(minutes=15)


def record_activity(store: SessionStore, session: Session, now: datetime | None = None) -> None:
    moment = now or clock.now()
    if session.last_active_at is not None and clock.parse_iso(session.last_active_at) > moment - RESOLUTION:
        return  # recorded within the minute: nothing to write
    store.touch_activity(
        session.project_id, session.session_id, clock.iso(moment), not_since=clock.iso(moment - RESOLUTION)
    )


def active_since(now: datetime | None = None) -> str:
    return clock.iso((now or clock.now()) - ACTIVE_WINDOW)
