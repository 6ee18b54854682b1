"""A teardown run given a deadline starts no kill after it; what it did not start is never lost."""

import pytest

from fakes import P1, FakeQueue, FakeSandboxes, FakeSessionStore, rate_limited
from session_service.domain.errors import TeardownIncomplete
from session_service.domain.requests import CreateSessionRequest, TeardownMessage
from session_service.services.sessions import SessionService
from session_service.services.teardown import Teardown


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class SlowSandboxes(FakeSandboxes):
    """Every kill takes `seconds` of the clock."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        super().__init__()
        self.clock, self.seconds = clock, seconds

    def kill(self, sandbox_id: str) -> bool:
        self.clock.now += self.seconds
        return super().kill(sandbox_id)


def deleted_session_with(service: SessionService, sandboxes: FakeSandboxes, queue: FakeQueue, n: int) -> str:
    session, _ = service.create(P1, CreateSessionRequest(user_id="u"))
    for i in range(n):
        sandboxes.add(f"sbx{i}", P1, session.session_id)
    service.delete(P1, session.session_id)
    return session.session_id


def test_kills_not_started_before_the_deadline_fail_the_run_and_the_next_run_finishes(
    service: SessionService, store: FakeSessionStore, queue: FakeQueue
) -> None:
    clock = Clock()
    sandboxes = SlowSandboxes(clock, seconds=1.0)
    teardown = Teardown(store, sandboxes, queue, kill_concurrency=1, sleep=lambda _: None, monotonic=clock)
    sid = deleted_session_with(service, sandboxes, queue, 5)
    message = TeardownMessage.model_validate(queue.sent[-1].to_message())

    with pytest.raises(TeardownIncomplete, match="not started in time"):
        teardown.run(message, deadline=clock.now + 2.5)  # room to start three kills (at 0, 1 and 2 s)
    assert sandboxes.kill_calls == ["sbx0", "sbx1", "sbx2"]
    assert sorted(sandboxes.sandboxes) == ["sbx3", "sbx4"]
    session = store.get(P1, sid)
    assert session is not None and session.teardown_state == "pending" and session.sandboxes_killed == 3

    assert teardown.run(message, deadline=clock.now + 60).outcome == "done"  # the retried message
    session = store.get(P1, sid)
    assert sandboxes.sandboxes == {} and session is not None and session.sandboxes_killed == 5


def test_a_passed_deadline_starts_nothing(
    service: SessionService, store: FakeSessionStore, queue: FakeQueue
) -> None:
    clock = Clock()
    sandboxes = SlowSandboxes(clock, seconds=1.0)
    teardown = Teardown(store, sandboxes, queue, sleep=lambda _: None, monotonic=clock)
    deleted_session_with(service, sandboxes, queue, 2)
    with pytest.raises(TeardownIncomplete):
        teardown.run(TeardownMessage.model_validate(queue.sent[-1].to_message()), deadline=clock.now)
    assert sandboxes.kill_calls == []


def test_rate_limit_backoff_never_sleeps_past_the_deadline(
    service: SessionService, store: FakeSessionStore, queue: FakeQueue
) -> None:
    clock = Clock()
    sandboxes = FakeSandboxes()
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    teardown = Teardown(store, sandboxes, queue, sleep=sleep, monotonic=clock)
    deleted_session_with(service, sandboxes, queue, 1)
    sandboxes.fail["sbx0"] = [rate_limited()] * 5
    with pytest.raises(TeardownIncomplete):
        teardown.run(TeardownMessage.model_validate(queue.sent[-1].to_message()), deadline=clock.now + 0.5)
    assert sum(slept) <= 0.5 + 1e-9
    assert "sbx0" in sandboxes.sandboxes
