"""The history checker: what clients saw, checked against what the service promises.

A history is every operation a client made (kind, session, when it started and ended by the client's clock,
the status and the version/metadata it was answered with), the faults injected (intervals by the same
clock), and, after the run, the final state of each session as DynamoDB stores it and as the API serves
it. The rules (docs/architecture.md, "The response cache"):

- no resurrection: no GET or execute answers 200 for a session once a DELETE of it has returned 200;
- no stale read beyond `stale_window`: a GET that started after a PATCH returned version v answers a version
  >= v, or else it started at most `stale_window` seconds after that PATCH returned;
- no wrong content: a version a PATCH produced is always served with the metadata that PATCH set;
- no phantom 404: a session nobody tried to delete is never answered 404;
- no lost write: the final stored state has every acknowledged write (a deleted session is deleted; a live
  one is at least at the highest acknowledged version, with that PATCH's metadata if it is the last), and
  the API serves exactly what is stored;
- no 5xx other than a 503 while a dependency was actually faulted (the operation overlapped a fault).

Pure: no I/O, so that tests/unit can feed it histories that break each rule.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# What each kind of operation may answer when nothing is wrong (5xx are judged separately).
EXPECTED = {
    "create": {201},
    "get": {200, 404},
    "patch": {200, 404, 409},
    "delete": {200, 404},
    "execute": {200, 404},
}


@dataclass(frozen=True)
class Op:
    kind: str  # create | get | patch | delete | execute
    session_id: str
    started: float
    ended: float
    status: int
    version: int | None = None  # of the session in the answer (create, get, patch)
    metadata: Any = None  # of the session in the answer


class Interval(Protocol):
    @property
    def started(self) -> float: ...

    @property
    def ended(self) -> float: ...


@dataclass(frozen=True)
class Final:
    """A session after the run: as stored (DynamoDB) and as served (a GET once everything settled)."""

    stored_deleted: bool | None  # None: no item at all
    stored_version: int | None
    stored_metadata: Any
    served_status: int
    served_version: int | None = None
    served_metadata: Any = None


@dataclass(frozen=True)
class Violation:
    rule: str
    session_id: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule} [{self.session_id}]: {self.detail}"


@dataclass
class Report:
    ops: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    faults: int = 0
    fault_seconds: float = 0.0
    reads_after_delete: int = 0  # reads that could have resurrected a session (the rule was exercised)
    reads_after_patch: int = 0  # reads that could have been stale
    stale_reads: int = 0  # within the window or not
    worst_stale: float = 0.0  # seconds after the PATCH returned, of the worst stale read (0: none)
    worst_resurrection: float | None = None  # seconds after the DELETE returned (None: none)
    tolerated_503: int = 0  # 503s that overlapped a fault
    writes_checked: int = 0  # acknowledged writes compared with the final state
    violations: list[Violation] = field(default_factory=list)

    def summary(self) -> str:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(self.by_kind.items()))
        resurrection = "none" if self.worst_resurrection is None else f"{self.worst_resurrection:.3f}s"
        return (
            f"{self.ops} ops ({kinds}); {self.faults} faults ({self.fault_seconds:.1f}s faulted); "
            f"{self.reads_after_delete} reads after an acknowledged DELETE, "
            f"worst resurrection {resurrection}; "
            f"{self.reads_after_patch} reads after an acknowledged PATCH, {self.stale_reads} stale, "
            f"worst stale window {self.worst_stale:.3f}s; {self.writes_checked} acknowledged writes checked; "
            f"503 during faults {self.tolerated_503}; violations {len(self.violations)}"
        )


def check(
    ops: Sequence[Op],
    faults: Iterable[Interval],
    final: Mapping[str, Final] | None = None,
    *,
    stale_window: float = 1.0,
) -> Report:
    faults = list(faults)
    report = Report(ops=len(ops), faults=len(faults), fault_seconds=sum(f.ended - f.started for f in faults))
    by_session: dict[str, list[Op]] = {}
    for op in ops:
        report.by_kind[op.kind] += 1
        report.statuses[op.status] += 1
        by_session.setdefault(op.session_id, []).append(op)
        _check_status(op, faults, report)
    for session_id, history in by_session.items():
        _check_session(session_id, history, report, stale_window)
        if final is not None and session_id in final:
            _check_final(session_id, history, final[session_id], report)
    return report


def _violation(report: Report, rule: str, op: Op, detail: str) -> None:
    report.violations.append(Violation(rule, op.session_id, f"{op.kind} {op.status} {detail}"))


def _check_status(op: Op, faults: list[Interval], report: Report) -> None:
    if op.status >= 500:
        if op.status == 503 and any(f.started <= op.ended and op.started <= f.ended for f in faults):
            report.tolerated_503 += 1
        elif op.status == 503:
            _violation(report, "server error", op, f"at {op.started:.3f}-{op.ended:.3f}, no fault then")
        else:
            _violation(report, "server error", op, f"at {op.started:.3f}-{op.ended:.3f}: only 503 may be")
    elif op.status not in EXPECTED[op.kind]:
        _violation(report, "unexpected status", op, f"at {op.started:.3f}")


def _check_session(session_id: str, history: list[Op], report: Report, stale_window: float) -> None:
    acked_deletes = [op.ended for op in history if op.kind == "delete" and op.status == 200]
    deleted_at = min(acked_deletes) if acked_deletes else None
    first_delete_try = min((op.started for op in history if op.kind == "delete"), default=None)
    # Versions acknowledged by a create (1) or a PATCH, with when they were acknowledged and their metadata.
    acked = sorted(
        (op.ended, op.version, op.metadata)
        for op in history
        if op.version is not None and (op.kind, op.status) in (("create", 201), ("patch", 200))
    )
    produced = {version: metadata for _, version, metadata in acked}
    for op in history:
        if op.kind in ("get", "execute") and deleted_at is not None and op.started > deleted_at:
            report.reads_after_delete += 1
            if op.status == 200:
                window = op.started - deleted_at
                worst = report.worst_resurrection
                report.worst_resurrection = window if worst is None else max(worst, window)
                _violation(report, "resurrection", op, f"started {window:.3f}s after the DELETE returned")
        no_delete_yet = first_delete_try is None or first_delete_try > op.ended
        if op.kind in ("get", "patch") and op.status == 404 and no_delete_yet:
            _violation(report, "phantom 404", op, "no DELETE had been sent")
        if op.status in (200, 201) and op.version in produced and op.metadata != produced[op.version]:
            _violation(
                report,
                "wrong content",
                op,
                f"version {op.version} with {op.metadata!r}, not {produced[op.version]!r}",
            )
        if op.kind != "get" or op.status != 200 or op.version is None:
            continue
        newer = [(ended, version) for ended, version, _ in acked if ended < op.started]
        if not newer:
            continue
        report.reads_after_patch += 1
        floor = max(version for _, version in newer)
        if op.version >= floor:
            continue
        # Stale since the first acknowledged version above the one served.
        since = min(ended for ended, version in newer if version > op.version)
        window = op.started - since
        report.stale_reads += 1
        report.worst_stale = max(report.worst_stale, window)
        if window > stale_window:
            _violation(
                report, "stale read", op, f"version {op.version} {window:.3f}s after version {floor} returned"
            )


def _check_final(session_id: str, history: list[Op], final: Final, report: Report) -> None:
    acked_delete = any(op.kind == "delete" and op.status == 200 for op in history)
    tried_delete = any(op.kind == "delete" for op in history)
    patches = [op for op in history if op.kind in ("create", "patch") and op.status in (200, 201)]
    report.writes_checked += len(patches) + int(acked_delete)
    if final.stored_deleted is None:
        if patches or acked_delete:
            report.violations.append(Violation("lost write", session_id, "the session is not stored at all"))
        return
    if final.stored_deleted:
        if not tried_delete:
            report.violations.append(Violation("lost write", session_id, "deleted, but nobody deleted it"))
        if final.served_status != 404:
            _violation_final(report, session_id, f"stored deleted, served {final.served_status}")
        return
    if acked_delete:
        report.violations.append(Violation("lost write", session_id, "an acknowledged DELETE is not stored"))
        return
    if patches:
        last = max(patches, key=lambda op: op.version or 0)
        if final.stored_version is None or final.stored_version < (last.version or 0):
            report.violations.append(
                Violation(
                    "lost write",
                    session_id,
                    f"stored version {final.stored_version} < acknowledged {last.version}",
                )
            )
        elif final.stored_version == last.version and final.stored_metadata != last.metadata:
            report.violations.append(
                Violation(
                    "lost write", session_id, f"stored {final.stored_metadata!r}, acked {last.metadata!r}"
                )
            )
    served = (final.served_status, final.served_version, final.served_metadata)
    if served != (200, final.stored_version, final.stored_metadata):
        _violation_final(report, session_id, f"stored version {final.stored_version}, served {served!r}")


def _violation_final(report: Report, session_id: str, detail: str) -> None:
    report.violations.append(Violation("served is not stored", session_id, detail))
