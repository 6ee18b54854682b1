"""Races through the running dev stack, where every function runs in its own worker processes (a pool per
function), so GETs, DELETEs and executes really interleave, as on Lambda. (In-process invocations of
different functions are serialised by their environments and cannot race.)"""

from __future__ import annotations

import threading
import time

import pytest
from test_http_contract import call, sandboxes_of

pytestmark = pytest.mark.e2e


def test_no_stale_read_after_a_delete_returned(devstack: dict) -> None:
    key = devstack["projects"][0]["api_key"]
    stale: list[str] = []
    reads_after_delete = 0

    def read_until(stop: threading.Event, path: str, deleted_at: list[float], counter: list[int]) -> None:
        while not stop.is_set():
            started = time.monotonic()
            status, _ = call(devstack, "GET", path, key)
            if deleted_at and started > deleted_at[0]:
                counter.append(1)
                if status != 404:
                    stale.append(f"{path}: {status}")

    for _ in range(8):
        status, session = call(devstack, "POST", "/v1/sessions", key, {"user_id": "racer"})
        assert status == 201
        path = f"/v1/sessions/{session['id']}"
        assert call(devstack, "GET", path, key)[0] == 200  # warm the cache
        deleted_at: list[float] = []
        counter: list[int] = []
        stop = threading.Event()
        readers = [
            threading.Thread(target=read_until, args=(stop, path, deleted_at, counter)) for _ in range(4)
        ]
        for thread in readers:
            thread.start()
        time.sleep(0.1)
        assert call(devstack, "DELETE", path, key)[0] == 200
        deleted_at.append(time.monotonic())
        time.sleep(0.15)
        stop.set()
        for thread in readers:
            thread.join()
        reads_after_delete += len(counter)
    assert stale == []
    assert reads_after_delete > 0  # the check above was exercised


def test_execute_racing_delete_leaves_no_sandbox(devstack: dict) -> None:
    project = devstack["projects"][0]
    key = project["api_key"]
    outcomes: list[int] = []

    def run_execute(barrier: threading.Barrier, session_id: str, out: dict[str, int]) -> None:
        barrier.wait()
        out["execute"] = call(
            devstack, "POST", f"/v1/sessions/{session_id}/execute", key, {"command": "true"}
        )[0]

    def run_delete(barrier: threading.Barrier, session_id: str, delay: float, out: dict[str, int]) -> None:
        barrier.wait()
        time.sleep(delay)
        out["delete"] = call(devstack, "DELETE", f"/v1/sessions/{session_id}", key)[0]

    sessions = []
    for trial in range(12):
        status, session = call(devstack, "POST", "/v1/sessions", key, {"user_id": "racer"})
        assert status == 201
        barrier = threading.Barrier(2)
        out: dict[str, int] = {}
        threads = [
            threading.Thread(target=run_execute, args=(barrier, session["id"], out)),
            threading.Thread(target=run_delete, args=(barrier, session["id"], 0.01 * (trial % 4), out)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert out["delete"] == 200 and out["execute"] in (200, 404), out
        outcomes.append(out["execute"])
        sessions.append(session["id"])
    deadline = time.monotonic() + 15
    left = {sid: sandboxes_of(devstack, project["project_id"], sid) for sid in sessions}
    while any(left.values()) and time.monotonic() < deadline:
        time.sleep(0.25)
        left = {sid: sandboxes_of(devstack, project["project_id"], sid) for sid in sessions}
    assert not any(left.values()), f"orphaned sandboxes: {left}; execute outcomes {outcomes}"
