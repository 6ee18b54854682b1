"""The fault suite's history checker (tests/faults/history.py) finds each kind of broken promise in a
history made up for it, and nothing in a history that keeps them all."""

from __future__ import annotations

from dataclasses import dataclass

from faults.history import Final, Op, check

S = "ses_a"


@dataclass(frozen=True)
class Fault:
    started: float
    ended: float


def created(at: float = 0.0) -> Op:
    return Op("create", S, at, at + 0.1, 201, 1, {"w": 0})


def patched(at: float, version: int, w: int) -> Op:
    return Op("patch", S, at, at + 0.1, 200, version, {"w": w})


def read(at: float, status: int = 200, version: int | None = 1, w: int = 0) -> Op:
    return Op(
        "get",
        S,
        at,
        at + 0.05,
        status,
        version if status == 200 else None,
        {"w": w} if status == 200 else None,
    )


def deleted(at: float, status: int = 200) -> Op:
    return Op("delete", S, at, at + 0.1, status)


def rules(ops: list[Op], faults: list[Fault] | None = None, final: Final | None = None) -> list[str]:
    report = check(ops, faults or [], None if final is None else {S: final}, stale_window=1.0)
    return [violation.rule for violation in report.violations]


def test_a_history_that_keeps_every_promise_passes_and_is_counted() -> None:
    ops = [created(), read(0.2), patched(1.0, 2, 1), read(1.2, version=2, w=1), deleted(2.0), read(2.2, 404)]
    final = Final(stored_deleted=True, stored_version=2, stored_metadata={"w": 1}, served_status=404)
    report = check(ops, [Fault(0.9, 1.5)], {S: final})
    assert report.violations == []
    assert (report.ops, report.reads_after_delete, report.reads_after_patch, report.writes_checked) == (
        6,
        1,
        2,
        3,
    )


def test_a_read_of_a_deleted_session_after_its_delete_returned_is_a_resurrection() -> None:
    report = check([created(), deleted(1.0), read(1.05), read(1.5)], [])
    assert [v.rule for v in report.violations] == ["resurrection"]
    assert report.worst_resurrection is not None and abs(report.worst_resurrection - 0.4) < 1e-9


def test_an_old_version_is_stale_only_beyond_the_window() -> None:
    within = [created(), patched(1.0, 2, 1), read(1.9)]
    beyond = [*within, read(2.5)]
    assert rules(within) == []
    assert rules(beyond) == ["stale read"]
    assert check(beyond, []).worst_stale > 1.0


def test_a_version_served_with_another_writes_content_is_wrong() -> None:
    assert rules([created(), patched(1.0, 2, 1), read(1.5, version=2, w=99)]) == ["wrong content"]


def test_a_404_before_any_delete_is_a_phantom() -> None:
    assert rules([created(), read(0.5, 404)]) == ["phantom 404"]
    unknown = [created(), deleted(1.0, 503), read(1.5, 404)]  # a DELETE of unknown outcome, during a fault
    assert rules(unknown, [Fault(0.9, 1.2)]) == []


def test_only_a_503_during_a_fault_is_tolerated() -> None:
    failing = Op("get", S, 1.0, 1.3, 503)
    assert rules([created(), failing], [Fault(1.2, 2.0)]) == []
    assert rules([created(), failing], [Fault(1.5, 2.0)]) == ["server error"]
    assert rules([created(), Op("get", S, 1.0, 1.3, 500)], [Fault(0.0, 9.0)]) == ["server error"]


def test_an_acknowledged_write_missing_from_the_final_state_is_lost() -> None:
    ops = [created(), patched(1.0, 2, 1)]
    behind = Final(False, 1, {"w": 0}, 200, 1, {"w": 0})
    assert rules(ops, final=behind) == ["lost write"]
    undeleted = Final(False, 2, {"w": 1}, 200, 2, {"w": 1})
    assert rules([*ops, deleted(2.0)], final=undeleted) == ["lost write"]


def test_the_api_must_serve_what_is_stored() -> None:
    ops = [created(), patched(1.0, 2, 1)]
    assert rules(ops, final=Final(False, 2, {"w": 1}, 200, 1, {"w": 0})) == ["served is not stored"]
    assert rules([*ops, deleted(2.0)], final=Final(True, 2, {"w": 1}, 200, 2, {"w": 1})) == [
        "served is not stored"
    ]
