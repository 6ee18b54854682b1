"""The history checker against the dev stack: concurrent clients create, read, PATCH, DELETE and execute
while a fault injector hangs (SIGSTOP/SIGCONT) and kills Redis at random; every operation is recorded with
its start, end and result, and the history is checked (faults.history): no 200 for a session after its
DELETE returned, no read of a version older than an acknowledged PATCH beyond 1 s, no acknowledged write
lost (the final stored state has it and the API serves it), no 5xx other than a 503 during a fault; and
every execute ran (its output came back) and left no sandbox behind a deleted session.

`make test` runs it for FAULT_HISTORY_SECONDS (default 15); `make soak` for FAULT_SOAK_SECONDS (default 300).
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest
from faults.faultkit import FaultyStack, eventually, final_state, op
from faults.history import Op, check

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="SIGSTOP/SIGKILL of the dev stack's redis"
    ),
]

SECONDS = float(os.environ.get("FAULT_HISTORY_SECONDS", "15"))
SOAK_SECONDS = float(os.environ.get("FAULT_SOAK_SECONDS", "300"))
CLIENTS = 4
STALE_WINDOW = 1.0  # the goal for a PATCH's old version, after Redis resumes
# What a client does next, by weight. Reads go to deleted sessions too, or resurrections could not show.
MIX = {"get": 45, "get_deleted": 12, "patch": 18, "create": 7, "delete": 7, "execute": 11}


@dataclass
class Sessions:
    live: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, deleted: bool = False) -> str | None:
        with self.lock:
            pool = self.deleted[-20:] if deleted else self.live
            return random.choice(pool) if pool else None


@dataclass
class Run:
    stack: FaultyStack
    seconds: float
    sessions: Sessions = field(default_factory=Sessions)
    stop: threading.Event = field(default_factory=threading.Event)  # set if the test ends early
    ops: list[Op] = field(default_factory=list)
    bad_executes: list[str] = field(default_factory=list)
    counter: itertools.count = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, session_id: str, reply: object) -> None:
        with self.lock:
            self.ops.append(op(kind, session_id, reply))  # type: ignore[arg-type]

    def client(self, deadline: float, seed: int) -> None:
        rng = random.Random(seed)
        kinds, weights = list(MIX), list(MIX.values())
        while time.monotonic() < deadline and not self.stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            if kind == "create" or not self.sessions.live:
                self._create()
                continue
            session_id = self.sessions.pick(deleted=kind == "get_deleted")
            if session_id is None:
                continue
            if kind in ("get", "get_deleted"):
                self.record("get", session_id, self.stack.get(session_id))
            elif kind == "patch":
                n = next(self.counter)
                self.record("patch", session_id, self.stack.patch(session_id, {"metadata": {"w": n}}))
            elif kind == "delete":
                self._delete(session_id)
            else:
                self._execute(session_id)

    def _create(self) -> None:
        reply = self.stack.call("POST", "/v1/sessions", {"user_id": "history", "metadata": {"w": -1}})
        if reply.status == 201:
            self.record("create", reply.body["id"], reply)
            with self.sessions.lock:
                self.sessions.live.append(reply.body["id"])

    def _delete(self, session_id: str) -> None:
        reply = self.stack.delete(session_id)
        self.record("delete", session_id, reply)
        with self.sessions.lock:
            if session_id in self.sessions.live:
                self.sessions.live.remove(session_id)
                self.sessions.deleted.append(session_id)

    def _execute(self, session_id: str) -> None:
        n = next(self.counter)
        reply = self.stack.execute(session_id, f"echo {n}")
        self.record("execute", session_id, reply)
        if reply.status == 200 and (reply.body.get("stdout"), reply.body.get("exit_code")) != (f"{n}\n", 0):
            self.bad_executes.append(f"{session_id}: {reply.body}")

    def inject(self, deadline: float, seed: int) -> None:
        """Hang Redis for 0.5-3 s (a third of the hangs 2 s or more) or kill it (the stack replaces it; the
        second fault and a fifth of the rest), then leave it alone for 0.3-2 s; until the deadline."""
        rng = random.Random(seed)
        for n in itertools.count():
            if time.monotonic() >= deadline - 1.0 or self.stop.is_set():
                break
            time.sleep(rng.uniform(0.3, 2.0))
            if n == 1 or rng.random() < 0.2:
                old, killed_at = self.stack.kill("redis")
                self.stack.wait_replaced("redis", old, killed_at)
            else:
                hang = rng.uniform(2.0, 3.0) if rng.random() < 1 / 3 else rng.uniform(0.5, 2.0)
                with self.stack.hung("redis", at_least=min(hang, max(0.0, deadline - time.monotonic()))):
                    pass


def run_history(stack: FaultyStack, seconds: float, figures: list[str], label: str) -> None:
    run = Run(stack, seconds)
    seed = random.randrange(1 << 30)
    for _ in range(6):
        run._create()
    since = time.monotonic()
    deadline = since + seconds
    threads = [threading.Thread(target=run.client, args=(deadline, seed + n)) for n in range(CLIENTS)]
    threads.append(threading.Thread(target=run.inject, args=(deadline, seed)))
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join(timeout=seconds + 120)
    finally:
        run.stop.set()  # a test that ends early (a timeout) leaves no client or injector running
        stack.resume_all()
    faults = stack.faults_since(since, "redis")

    # Settled: the stream invalidator has applied every change; the API must now serve what is stored.
    touched = sorted({o.session_id for o in run.ops})
    final = {
        session_id: eventually(
            lambda s=session_id: (
                (f := final_state(stack, s))
                and (f.served_status == 404 if f.stored_deleted else f.served_version == f.stored_version)
                and f
            ),
            f"{session_id}: served as stored",
        )
        for session_id in touched
    }
    report = check(run.ops, faults, final, stale_window=STALE_WINDOW)
    # Every sandbox of a deleted session is torn down; a live session has at most its recorded one.
    for session_id in touched:
        if final[session_id].stored_deleted:
            eventually(
                lambda s=session_id: stack.sandboxes(s) == [], f"{session_id}: sandboxes gone", within=20
            )
        else:
            stored = stack.stored(session_id)
            assert stored is not None
            assert set(stack.sandboxes(session_id)) <= {stored.sandbox_id}, session_id
    kills = sum(1 for f in faults if f.kind == "kill")
    figures.append(
        f"history ({label}, {seconds:.0f}s, {CLIENTS} clients, seed {seed}): {report.summary()}; "
        f"redis hung {len(faults) - kills}x and killed {kills}x"
    )
    assert not report.violations, "\n".join(map(str, report.violations[:20]))
    assert not run.bad_executes, run.bad_executes[:5]
    assert faults and report.reads_after_delete > 0 and report.reads_after_patch > 0


def test_history_under_redis_faults(stack: FaultyStack, figures: list[str]) -> None:
    run_history(stack, SECONDS, figures, "make test")


@pytest.mark.soak
@pytest.mark.timeout(SOAK_SECONDS + 300)
def test_soak_history_under_redis_faults(stack: FaultyStack, figures: list[str]) -> None:
    run_history(stack, SOAK_SECONDS, figures, "soak")
