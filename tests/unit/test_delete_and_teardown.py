import pytest

from fakes import P1, P2, FakeCache, FakeQueue, FakeSandboxes, FakeSessionStore, rate_limited, unavailable
from session_service.domain.errors import NotFound, TeardownIncomplete
from session_service.domain.requests import CreateSessionRequest, ListSessionsParams, TeardownMessage
from session_service.services.sessions import SessionService
from session_service.services.teardown import Sweeper, Teardown


@pytest.fixture
def teardown(store: FakeSessionStore, sandboxes: FakeSandboxes, queue: FakeQueue) -> Teardown:
    return Teardown(store, sandboxes, queue, max_sandboxes_per_run=10, sleep=lambda _: None)


def new_session(service: SessionService, project: str = P1, tag: str | None = None) -> str:
    session, _ = service.create(project, CreateSessionRequest(user_id="u", tag=tag, config={"secret": "x"}))
    return session.session_id


def message_for(queue: FakeQueue) -> TeardownMessage:
    return TeardownMessage.model_validate(queue.sent[-1].to_message())


def test_delete_tombstones_enqueues_and_blocks_the_cache(
    service: SessionService, store: FakeSessionStore, cache: FakeCache, queue: FakeQueue
) -> None:
    sid = new_session(service)
    service.get(P1, sid)  # warm cache
    tombstone = service.delete(P1, sid)
    assert tombstone.to_api() == {"id": sid, "deleted": True, "deleted_at": tombstone.deleted_at}
    assert cache.entries[(P1, sid)] == "!"
    assert [t.session_id for t in queue.sent] == [sid]
    with pytest.raises(NotFound):
        service.get(P1, sid)
    with pytest.raises(NotFound):
        service.delete(P1, sid)
    assert len(queue.sent) == 1


def test_delete_of_another_projects_session_is_not_found_and_leaves_it(
    service: SessionService, store: FakeSessionStore, queue: FakeQueue
) -> None:
    sid = new_session(service, P1)
    with pytest.raises(NotFound):
        service.delete(P2, sid)
    assert not store.get(P1, sid).is_deleted  # type: ignore[union-attr]
    assert queue.sent == []
    service.delete(P1, sid)


def test_delete_survives_a_failed_enqueue_and_a_dead_cache(
    service: SessionService, store: FakeSessionStore, cache: FakeCache, queue: FakeQueue
) -> None:
    sid = new_session(service)
    queue.down = cache.down = True
    service.delete(P1, sid)
    assert store.get(P1, sid).is_deleted  # type: ignore[union-attr]


def test_tag_is_reusable_after_delete(service: SessionService) -> None:
    old = new_session(service, tag="t")
    service.delete(P1, old)
    assert new_session(service, tag="t") != old


def test_listing_hides_tombstones_unless_asked_or_syncing(service: SessionService) -> None:
    live, dead = new_session(service), new_session(service)
    service.delete(P1, dead)
    assert [s.session_id for s in service.list(P1, ListSessionsParams()).items] == [live]
    shown = service.list(P1, ListSessionsParams(include_deleted=True)).items
    assert {s.session_id: s.to_api().get("deleted", False) for s in shown} == {live: False, dead: True}


def test_teardown_kills_running_and_paused_of_this_session_only(
    service: SessionService,
    teardown: Teardown,
    sandboxes: FakeSandboxes,
    queue: FakeQueue,
    store: FakeSessionStore,
) -> None:
    sid, other = new_session(service), new_session(service)
    sandboxes.add("a", P1, sid, "running")
    sandboxes.add("b", P1, sid, "paused")
    sandboxes.add("c", P1, other)
    sandboxes.add("d", P2, sid)  # same session id under another project: not ours
    service.delete(P1, sid)
    report = teardown.run(message_for(queue))
    assert report.outcome == "done" and report.sandboxes_killed == 2
    assert sorted(sandboxes.sandboxes) == ["c", "d"]
    done = store.get(P1, sid)
    assert done is not None and done.teardown_state == "done" and done.sandboxes_killed == 2
    assert done.config == {}  # content purged


def test_teardown_backs_off_on_429_and_counts_404_as_done(
    service: SessionService, teardown: Teardown, sandboxes: FakeSandboxes, queue: FakeQueue
) -> None:
    sid = new_session(service)
    sandboxes.add("a", P1, sid)
    sandboxes.add("b", P1, sid)
    sandboxes.fail["a"] = [rate_limited(), rate_limited()]
    service.delete(P1, sid)
    sandboxes.sandboxes.pop("b")  # vanishes between list and kill: kill says "not found"
    sandboxes.sandboxes["b"] = ({"project_id": P1, "session_id": sid}, "running")
    assert teardown.run(message_for(queue)).outcome == "done"
    assert sandboxes.kill_calls.count("a") == 3 and sandboxes.sandboxes == {}


def test_a_failed_kill_fails_the_message_and_a_retry_finishes(
    service: SessionService,
    teardown: Teardown,
    sandboxes: FakeSandboxes,
    queue: FakeQueue,
    store: FakeSessionStore,
) -> None:
    sid = new_session(service)
    for name in "abc":
        sandboxes.add(name, P1, sid)
    sandboxes.fail["b"] = [unavailable()]
    service.delete(P1, sid)
    with pytest.raises(TeardownIncomplete):
        teardown.run(message_for(queue))
    assert sorted(sandboxes.sandboxes) == ["b"]
    assert store.get(P1, sid).teardown_state == "pending"  # type: ignore[union-attr]
    assert teardown.run(message_for(queue)).outcome == "done"
    assert sandboxes.sandboxes == {} and store.get(P1, sid).sandboxes_killed == 3  # type: ignore[union-attr]


def test_more_sandboxes_than_the_cap_are_continued_in_a_new_message(
    service: SessionService, teardown: Teardown, sandboxes: FakeSandboxes, queue: FakeQueue
) -> None:
    sid = new_session(service)
    for i in range(25):
        sandboxes.add(f"s{i:02d}", P1, sid)
    service.delete(P1, sid)
    outcomes = []
    while True:
        outcome = teardown.run(message_for(queue)).outcome
        outcomes.append(outcome)
        if outcome == "done":
            break
    assert outcomes == ["continued", "continued", "done"]
    assert sandboxes.sandboxes == {} and len(queue.sent) == 3


def test_teardown_ignores_live_sessions_and_duplicates(
    service: SessionService,
    teardown: Teardown,
    sandboxes: FakeSandboxes,
    queue: FakeQueue,
    store: FakeSessionStore,
) -> None:
    sid = new_session(service)
    sandboxes.add("a", P1, sid)
    assert store.attach_sandbox(P1, sid, "a", replaces=None)
    forged = TeardownMessage(project_id=P1, session_id=sid, deleted_at="2026-01-01T00:00:00.000000Z")
    assert teardown.run(forged).outcome == "skipped"
    assert "a" in sandboxes.sandboxes  # a live session's sandbox is never touched
    assert store.get(P1, sid).teardown_state is None  # type: ignore[union-attr]
    service.delete(P1, sid)
    assert teardown.run(message_for(queue)).outcome == "done"
    assert teardown.run(message_for(queue)).outcome == "skipped"


def test_a_delete_whose_cache_tombstone_fails_is_never_served_again(
    service: SessionService, teardown: Teardown, cache: FakeCache, queue: FakeQueue
) -> None:
    sid = new_session(service)
    service.get(P1, sid)  # cached while live
    cache.down = True
    service.delete(P1, sid)  # the tombstone is lost...
    cache.down = False
    assert cache.body(P1, sid)[0] == 1  # type: ignore[index]  # ...the old body is still there
    with pytest.raises(NotFound):
        service.get(P1, sid)  # ...and not served
    assert cache.body(P1, sid) == "!"  # the read cached the deletion
    assert teardown.run(message_for(queue)).outcome == "done"  # teardown does not wait for Redis


def test_sweeper_reenqueues_only_pending_teardowns_past_the_grace_period(
    service: SessionService, store: FakeSessionStore, queue: FakeQueue
) -> None:
    lost = new_session(service)
    queue.down = True
    service.delete(P1, lost)  # tombstoned, but the message was lost
    queue.down = False
    assert Sweeper(store, queue, grace_seconds=3600).sweep() == 0
    assert Sweeper(store, queue, grace_seconds=-1).sweep() == 1
    assert [t.session_id for t in queue.sent] == [lost]


def test_a_late_message_for_a_done_session_still_kills_stragglers(
    service: SessionService,
    teardown: Teardown,
    sandboxes: FakeSandboxes,
    queue: FakeQueue,
    store: FakeSessionStore,
) -> None:
    sid = new_session(service)
    service.delete(P1, sid)
    assert teardown.run(message_for(queue)).outcome == "done"
    sandboxes.add("late", P1, sid, "paused")  # e.g. a fenced-out sandbox whose first kill failed
    assert teardown.run(message_for(queue)).outcome == "done"
    assert sandboxes.sandboxes == {} and store.get(P1, sid).sandboxes_killed == 1  # type: ignore[union-attr]


def test_a_message_for_a_live_session_kills_only_sandboxes_it_does_not_record(
    service: SessionService, teardown: Teardown, sandboxes: FakeSandboxes, store: FakeSessionStore
) -> None:
    """The workbench's check after a failed create: E2B finished that create after the caller gave up."""
    sid, other = new_session(service), new_session(service)
    for sandbox_id, session_id in (("recorded", sid), ("late", sid), ("others", other)):
        sandboxes.add(sandbox_id, P1, session_id)
    assert store.attach_sandbox(P1, sid, "recorded", replaces=None)
    check = TeardownMessage(project_id=P1, session_id=sid, deleted_at="")

    report = teardown.run(check)

    assert (report.outcome, report.sandboxes_killed) == ("strays", 1)
    assert sorted(sandboxes.sandboxes) == ["others", "recorded"]
    live = store.get(P1, sid)
    assert live is not None and not live.is_deleted and live.teardown_state is None
    assert teardown.run(check).outcome == "skipped"
