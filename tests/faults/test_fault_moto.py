"""DynamoDB (the dev stack's moto server) slowed and hung while clients create, PATCH, read and DELETE.

What must hold: a DynamoDB call that times out answers 503 service_unavailable (JSON, never a 500 or a
stack trace), within the time budget of the function's DynamoDB calls (two attempts of 1 s connect + 1.5 s
read); nothing is half written: every session item agrees with its config history (written in the same
transaction), a tag names at most one live session and a retried create finds it, every acknowledged write
is stored, and the API serves what is stored once DynamoDB answers again. A write that answered 503 may
still have been applied when moto resumed and took the queued request: its outcome is unknown, as the
docs say, and the checks accept either state, but never half of one.

The project routes run with the API-key authorizer's decision cached (as in the cloud); the session routes'
authorizer is never cached, and a DynamoDB failure there is a 503 too.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from faults.faultkit import ClientThreads, FaultyStack, eventually, final_state, op, unique
from faults.history import Op, check

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGSTOP of the dev stack's moto server"),
]

DYNAMODB_BUDGET = 2 * (1.0 + 1.5)  # attempts x (connect + read) timeouts (session_service.settings)
SLACK = 4.0  # the authorizer's and the function's other work, on a loaded (3x slower) machine


class Writers(ClientThreads):
    """Client threads, each going round create (tagged) → PATCH → GET → DELETE → GET, recording it all."""

    def __init__(self, stack: FaultyStack, threads: int = 3) -> None:
        super().__init__(threads)
        self._stack = stack
        self.ops: list[Op] = []
        self.tags: dict[str, str] = {}  # tag → its user id (one user per tag, to list them)
        self.failed_creates = 0  # 503s (no session id to record them under)

    def _record(self, kind: str, session_id: str, reply: object) -> None:
        with self._lock:
            self.ops.append(op(kind, session_id, reply))  # type: ignore[arg-type]

    def _run(self, number: int) -> None:
        stack = self._stack
        while not self._stop.is_set():
            tag, user = f"moto-{unique()}", f"u-{unique()}"
            with self._lock:
                self.tags[tag] = user
            created = stack.call(
                "POST",
                "/v1/sessions",
                {"user_id": user, "tag": tag, "config": {"n": 0}, "metadata": {"n": 0}},
            )
            if created.status != 201:
                assert created.status == 503 and created.code == "service_unavailable", created
                with self._lock:
                    self.failed_creates += 1
                continue
            sid = created.body["id"]
            self._record("create", sid, created)
            self._record("patch", sid, stack.patch(sid, {"config": {"n": 1}, "metadata": {"n": 1}}))
            self._record("get", sid, stack.get(sid))
            self._record("delete", sid, stack.delete(sid))
            self._record("get", sid, stack.get(sid))


@contextmanager
def stuttering(stack: FaultyStack, seconds: float, stopped: float, running: float) -> Iterator[None]:
    """moto slowed: stopped for `stopped` s, running for `running` s, over and over, for `seconds`."""
    done = threading.Event()

    def stutter() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not done.is_set():
            with stack.hung("moto", at_least=stopped):
                pass
            time.sleep(running)

    thread = threading.Thread(target=stutter, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=seconds + 5)


def nothing_half_written(
    stack: FaultyStack, writers: Writers, since: float, what: str, figures: list[str]
) -> None:
    session_ids = sorted({o.session_id for o in writers.ops})
    for session_id in session_ids:
        stored = stack.stored(session_id)
        assert stored is not None
        history = [e for e in stack.audit(session_id) if e.get("kind") == "config"]
        # The item and its config history are one transaction: the latest entry is the stored version.
        assert history and int(history[-1]["version"]) == stored.version, (session_id, stored, history)
        if not stored.is_deleted:
            assert history[-1]["config"] == stored.config, (session_id, stored, history)
        else:
            assert stored.teardown_state in ("pending", "done"), stored
    # The stream invalidator puts the cache right once moto answers; then the API serves what is stored.
    final = {}
    for session_id in session_ids:
        final[session_id] = eventually(
            lambda s=session_id: (
                (f := final_state(stack, s))
                and (f.served_status == 404 if f.stored_deleted else f.served_version == f.stored_version)
                and f
            ),
            f"{session_id}: served as stored",
        )
    report = check(writers.ops, stack.faults_since(since, "moto"), final, stale_window=0.0)
    # A tag names at most one live session, and a retried create finds it (or makes the only one).
    for tag, user in writers.tags.items():
        retried = stack.call("POST", "/v1/sessions", {"user_id": user, "tag": tag})
        assert retried.status in (200, 201), retried
        listing = stack.call("GET", f"/v1/sessions?user_id={user}&limit=50")
        live = [s["id"] for s in listing.body["items"] if s.get("tag") == tag]
        assert live == [retried.body["id"]], (tag, live, retried)
    failed = writers.failed_creates + sum(1 for o in writers.ops if o.status == 503)
    figures.append(f"moto {what}: {report.summary()}; {len(writers.tags)} tags checked; 503s {failed}")
    assert not report.violations, "\n".join(map(str, report.violations))


def test_moto_slowed(stack: FaultyStack, figures: list[str]) -> None:
    """Stalls shorter than a DynamoDB timeout: slow answers, not failures."""
    since = time.monotonic()
    with Writers(stack) as writers, stuttering(stack, seconds=3.0, stopped=0.4, running=0.3):
        time.sleep(3.0)
    assert sum(1 for o in writers.ops if o.status < 500) > 10  # work went on while moto stuttered
    nothing_half_written(stack, writers, since, "slowed (stopped 0.4s in every 0.7s for 3s)", figures)


def test_moto_hung(stack: FaultyStack, figures: list[str]) -> None:
    warm = stack.create()
    assert stack.get(warm["id"]).status == 200  # cached: the GET below fails in its authorizer, not Redis
    since = time.monotonic()
    with Writers(stack) as writers:
        time.sleep(0.5)
        with stack.hung("moto", at_least=DYNAMODB_BUDGET + 0.5):
            timed = {
                "get": stack.get(warm["id"]),
                "patch": stack.patch(warm["id"], {"metadata": {"during": "hang"}}),
            }
        time.sleep(0.5)
    for name, reply in timed.items():
        assert (reply.status, reply.code) == (503, "service_unavailable"), (name, reply)
        assert reply.took < DYNAMODB_BUDGET + SLACK, (name, reply.took)
    # The writers met the hang too (a create that failed has no session to record it under).
    assert writers.failed_creates or any(o.status == 503 for o in writers.ops), writers.ops
    took = ", ".join(f"{name} {reply.took:.1f}s" for name, reply in timed.items())
    figures.append(f"moto hung: 503 service_unavailable after {took} (budget {DYNAMODB_BUDGET:.0f}s)")
    nothing_half_written(stack, writers, since, "hung", figures)
    after = stack.patch(warm["id"], {"metadata": {"after": "hang"}})
    assert after.status == 200 and after.body["version"] in (2, 3), after
