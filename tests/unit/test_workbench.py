import threading

import pytest

from fakes import P1, P2, FakeQueue, FakeSandboxes, FakeSessionStore, unavailable
from session_service.domain.errors import NotFound, SandboxUnavailable
from session_service.domain.requests import CreateSessionRequest, ExecuteRequest
from session_service.services.sessions import SessionService
from session_service.services.workbench import Workbench


@pytest.fixture
def bench(store: FakeSessionStore, sandboxes: FakeSandboxes, queue: FakeQueue) -> Workbench:
    return Workbench(store, sandboxes, queue)


def new_session(service: SessionService, project: str = P1) -> str:
    return service.create(project, CreateSessionRequest(user_id="u"))[0].session_id


def run(bench: Workbench, sid: str, project: str = P1, command: str = "echo hi") -> dict:
    return bench.execute(project, sid, ExecuteRequest(command=command)).to_api()


def test_first_execute_creates_a_sandbox_with_the_sessions_metadata_and_later_ones_reuse_it(
    service: SessionService, bench: Workbench, sandboxes: FakeSandboxes, store: FakeSessionStore
) -> None:
    sid = new_session(service)
    first, second = run(bench, sid), run(bench, sid, command="pwd")
    assert first["sandbox_id"] == second["sandbox_id"] and sandboxes.created == 1
    assert sandboxes.sandboxes[first["sandbox_id"]][0] == {"project_id": P1, "session_id": sid}
    assert first["exit_code"] == 0 and first["stdout"] == "ran echo hi\n"
    assert [(u.session_id, u.exit_code) for u in store.usage] == [(sid, 0), (sid, 0)]


def test_unknown_foreign_or_deleted_sessions_are_404_and_create_nothing(
    service: SessionService, bench: Workbench, sandboxes: FakeSandboxes
) -> None:
    sid = new_session(service, P1)
    with pytest.raises(NotFound):
        run(bench, sid, project=P2)
    with pytest.raises(NotFound):
        run(bench, "ses_01jc0000000000000000000000")
    service.delete(P1, sid)
    with pytest.raises(NotFound):
        run(bench, sid)
    assert sandboxes.created == 0


def test_the_fence_kills_a_sandbox_created_while_the_session_was_deleted(
    service: SessionService, bench: Workbench, sandboxes: FakeSandboxes, store: FakeSessionStore
) -> None:
    sid = new_session(service)
    store.before_attach.append(lambda: service.delete(P1, sid))
    with pytest.raises(NotFound):
        run(bench, sid)
    assert sandboxes.created == 1 and sandboxes.sandboxes == {}


def test_a_fenced_out_sandbox_whose_kill_fails_is_handed_to_teardown(
    service: SessionService,
    bench: Workbench,
    sandboxes: FakeSandboxes,
    store: FakeSessionStore,
    queue: FakeQueue,
) -> None:
    sid = new_session(service)
    store.before_attach.append(lambda: service.delete(P1, sid))
    sandboxes.fail["sbx001"] = [unavailable()]
    with pytest.raises(NotFound):
        run(bench, sid)
    assert [t.session_id for t in queue.sent] == [sid, sid]  # the DELETE's message, then the fence's


def test_concurrent_first_executes_leave_one_sandbox(
    service: SessionService, bench: Workbench, sandboxes: FakeSandboxes, store: FakeSessionStore
) -> None:
    sid = new_session(service)
    barrier = threading.Barrier(4)
    store.before_attach.append(lambda: barrier.wait(timeout=5))
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(run(bench, sid))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r["sandbox_id"] for r in results}) == 1 and len(results) == 4
    assert list(sandboxes.sandboxes) == [results[0]["sandbox_id"]]


def test_a_vanished_sandbox_is_replaced_for_a_live_session(
    service: SessionService, bench: Workbench, sandboxes: FakeSandboxes
) -> None:
    sid = new_session(service)
    first = run(bench, sid)["sandbox_id"]
    sandboxes.sandboxes.clear()  # expired or killed by hand
    second = run(bench, sid)["sandbox_id"]
    assert second != first and list(sandboxes.sandboxes) == [second]


def test_e2b_down_is_unavailable_records_nothing_and_schedules_a_late_check(
    service: SessionService,
    bench: Workbench,
    sandboxes: FakeSandboxes,
    store: FakeSessionStore,
    queue: FakeQueue,
) -> None:
    sid = new_session(service)
    sandboxes.down = True
    with pytest.raises(SandboxUnavailable):
        run(bench, sid)
    assert store.get(P1, sid).sandbox_id is None and store.usage == []  # type: ignore[union-attr]
    # E2B may still finish that create: a delayed teardown run re-checks the session then.
    assert [t.session_id for t in queue.sent] == [sid] and queue.delays == [120]


def test_a_create_that_e2b_finished_after_we_gave_up_is_the_next_executes_sandbox(
    service: SessionService,
    bench: Workbench,
    sandboxes: FakeSandboxes,
    store: FakeSessionStore,
    queue: FakeQueue,
) -> None:
    """E2B hung: our create timed out (503) but E2B carried it out when it resumed. The same slot's
    idempotency key gets that sandbox back, so the session never has two."""
    sid = new_session(service)
    sandboxes.late = True
    with pytest.raises(SandboxUnavailable):
        run(bench, sid)
    assert len(sandboxes.sandboxes) == 1 and store.get(P1, sid).sandbox_id is None  # type: ignore[union-attr]
    assert queue.delays == [120]  # and the late check is scheduled all the same
    sandboxes.late = False

    adopted = run(bench, sid)["sandbox_id"]

    assert list(sandboxes.sandboxes) == [adopted] and sandboxes.created == 1
    assert store.get(P1, sid).sandbox_id == adopted  # type: ignore[union-attr]
    sandboxes.sandboxes.clear()  # that one vanished: the next slot has a key of its own
    assert run(bench, sid)["sandbox_id"] != adopted and sandboxes.created == 2


def test_the_late_check_waits_as_configured(
    service: SessionService, store: FakeSessionStore, sandboxes: FakeSandboxes, queue: FakeQueue
) -> None:
    bench = Workbench(store, sandboxes, queue, late_create_grace_seconds=7)
    sid = new_session(service)
    sandboxes.down = True
    with pytest.raises(SandboxUnavailable):
        run(bench, sid)
    assert queue.delays == [7]
