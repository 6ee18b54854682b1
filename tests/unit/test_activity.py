"""The activity stamp: `last_active_at` is written at most once a minute per session, and
`GET /v1/sessions?active=true` lists the sessions stamped in the last 15 minutes, most recent first. Time is
a fake clock: `record_activity(..., now=...)` and the service's `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fakes import P1, FakeCache, FakeSessionStore
from session_service.domain import clock
from session_service.domain.requests import CreateSessionRequest, ListSessionsParams
from session_service.services.activity import record_activity
from session_service.services.sessions import SessionService

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def iso(self) -> str:
        return clock.iso(self.at)


class WriteCountingStore(FakeSessionStore):
    """The fake store, counting the activity writes it is sent (each is a DynamoDB write, even refused)."""

    def __init__(self) -> None:
        super().__init__()
        self.activity_writes = 0

    def touch_activity(self, project_id: str, session_id: str, at: str, not_since: str) -> None:
        self.activity_writes += 1
        super().touch_activity(project_id, session_id, at, not_since)


def test_last_active_at_is_written_at_most_once_a_minute() -> None:
    store = WriteCountingStore()
    service = SessionService(store, FakeCache(), now=FakeClock(T0).iso)
    session_id = service.create(P1, CreateSessionRequest(user_id="u1"))[0].session_id

    def request_at(seconds: float) -> str | None:
        """A request that reads the session, then records its activity; what is stored after it."""
        record_activity(store, store.sessions[(P1, session_id)], now=T0 + timedelta(seconds=seconds))
        return store.sessions[(P1, session_id)].last_active_at

    assert request_at(0) == clock.iso(T0) and store.activity_writes == 1
    read_early = store.sessions[(P1, session_id)]
    for seconds in range(5, 60, 5):  # a busy minute: no further write at all
        assert request_at(seconds) == clock.iso(T0)
    assert request_at(59.999) == clock.iso(T0)
    assert store.activity_writes == 1
    assert request_at(61) == clock.iso(T0 + timedelta(seconds=61))  # the next minute: one write
    assert store.activity_writes == 2

    # A request that read the session before that stamp may try to write, but cannot move it within the
    # minute (the write is conditional on the stored stamp).
    record_activity(store, read_early, now=T0 + timedelta(seconds=90))
    assert store.sessions[(P1, session_id)].last_active_at == clock.iso(T0 + timedelta(seconds=61))


def test_active_lists_the_sessions_active_in_the_last_15_minutes_most_recent_first() -> None:
    now = T0 + timedelta(hours=1)
    store = FakeSessionStore()
    fake_clock = FakeClock(T0)
    service = SessionService(store, FakeCache(), now=fake_clock.iso)
    stamped = {
        "just_now": now - timedelta(minutes=1),
        "at_the_cutoff": now - timedelta(minutes=15),
        "just_before_the_cutoff": now - timedelta(minutes=15, microseconds=1),
        "an_hour_ago": now - timedelta(hours=1),
        "deleted": now - timedelta(minutes=2),
    }
    ids = {}
    for name, at in stamped.items():
        ids[name] = service.create(P1, CreateSessionRequest(user_id=name))[0].session_id
        record_activity(store, store.sessions[(P1, ids[name])], now=at)
    ids["never_active"] = service.create(P1, CreateSessionRequest(user_id="never_active"))[0].session_id
    fake_clock.at = now
    service.delete(P1, ids["deleted"])

    listed = service.list(P1, ListSessionsParams(active=True))
    assert [item.session_id for item in listed.items] == [ids["just_now"], ids["at_the_cutoff"]]
    assert [item.last_active_at for item in listed.items] == [
        clock.iso(stamped["just_now"]),
        clock.iso(stamped["at_the_cutoff"]),
    ]

    fake_clock.at = now + timedelta(microseconds=1)  # a moment later the cutoff has passed it
    listed = service.list(P1, ListSessionsParams(active=True))
    assert [item.session_id for item in listed.items] == [ids["just_now"]]
