"""Redis hung, killed, and restarted empty, while clients read, PATCH and DELETE through the dev stack.

What must hold (docs/architecture.md, "The response cache"): Redis is optional, so every request is answered
as if it were up (no 5xx, reads from DynamoDB meanwhile); once a PATCH or a DELETE has returned 200 no read
serves an older version or the deleted session, during the fault or after it; the stored state has every
acknowledged write; and the cache converges to it (the stream invalidator's writes land once Redis answers).
"""

from __future__ import annotations

import sys
import time

import pytest
from faults.faultkit import FaultyStack, Readers, eventually, final_state, op, patch_twice_delete_twice
from faults.history import Op, check

from session_service.adapters.redis_cache import TOMBSTONE, parse_entry

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="SIGSTOP/SIGKILL of the dev stack's services"
    ),
]


def warm(stack: FaultyStack, *sessions: dict) -> None:
    for session in sessions:
        for _ in range(2):
            assert stack.get(session["id"]).status == 200
        eventually(lambda s=session: stack.cached(s["id"]), f"{session['id']} cached")


def settled(
    stack: FaultyStack, ops: list[Op], *session_ids: str, since: float, figures: list[str], what: str
) -> None:
    """The checker's verdict on what the clients saw, once the stream invalidator has caught up."""
    for session_id in session_ids:
        stored = stack.stored(session_id)
        assert stored is not None
        if stored.is_deleted:
            eventually(lambda s=session_id: stack.cached(s) == TOMBSTONE, f"{session_id}: tombstone cached")
        else:
            eventually(
                lambda s=session_id, v=stored.version: _cached_version(stack, s) == v,
                f"{session_id}: version {stored.version} cached",
            )
    final = {session_id: final_state(stack, session_id) for session_id in session_ids}
    report = check(ops, stack.faults_since(since, "redis"), final, stale_window=0.0)
    figures.append(f"redis {what}: {report.summary()}")
    assert not report.violations, "\n".join(map(str, report.violations))
    assert report.reads_after_delete > 0 and report.reads_after_patch > 0  # the rules were exercised
    assert report.statuses.keys() <= {200, 201, 404}  # Redis is optional: not even a 503


def _cached_version(stack: FaultyStack, session_id: str) -> int | None:
    value = stack.cached(session_id)
    entry = parse_entry(value) if value not in (None, TOMBSTONE) else None
    return entry[0] if entry else None


def test_redis_hung_during_reads_patch_and_delete(stack: FaultyStack, figures: list[str]) -> None:
    patched, deleted, decoy, still = (stack.create() for _ in range(4))
    warm(stack, patched, deleted, decoy, still)
    ids = [patched["id"], deleted["id"], decoy["id"], still["id"]]
    since = time.monotonic()
    with Readers(stack, ids) as readers:
        time.sleep(0.2)
        with stack.hung("redis", at_least=2.0) as stopped:
            done = patch_twice_delete_twice(stack, patched, deleted, decoy, {"fault": "hung"})
            write_seconds = max(o.ended for o in done) - stopped
        # The lost invalidations are still in Redis when it answers again...
        lost = stack.cached(deleted["id"]) != TOMBSTONE or _cached_version(stack, patched["id"]) != 3
        time.sleep(1.5)  # ...and readers keep reading while the stream invalidator catches up
    during = [r for r in readers.ops() if stopped < r.started and r.ended < stack.faults[-1].ended]
    assert during and all(r.status in (200, 404) for r in during)  # reads went on from DynamoDB
    figures.append(
        f"redis hung: 2 PATCHes + 2 DELETEs answered within {write_seconds:.2f}s of the hang; "
        f"{len(during)} reads answered during it; lost invalidations seen at resume: {lost}"
    )
    settled(stack, [*done, *readers.ops()], *ids, since=since, figures=figures, what="hung")


def test_redis_killed_during_reads_patch_and_delete(stack: FaultyStack, figures: list[str]) -> None:
    """Killed: connections are refused until the stack starts a new, empty redis-server."""
    patched, deleted, decoy, still = (stack.create() for _ in range(4))
    warm(stack, patched, deleted, decoy, still)
    ids = [patched["id"], deleted["id"], decoy["id"], still["id"]]
    since = time.monotonic()
    with Readers(stack, ids) as readers:
        time.sleep(0.2)
        old, killed_at = stack.kill("redis")
        done = patch_twice_delete_twice(stack, patched, deleted, decoy, {"fault": "killed"})
        assert max(o.ended for o in done) < killed_at + 1.5  # all of it while Redis was down
        stack.wait_replaced("redis", old, killed_at)
        time.sleep(1.5)
    settled(stack, [*done, *readers.ops()], *ids, since=since, figures=figures, what="killed")


def test_redis_restarted_empty_during_reads_patch_and_delete(stack: FaultyStack, figures: list[str]) -> None:
    """Restarted: the functions' pooled connections are dead and the new server holds nothing, not even the
    tombstones; the writes come right after it is back, through those dead connections."""
    patched, deleted, decoy, still, gone = (stack.create() for _ in range(5))
    earlier = stack.delete(gone["id"])
    assert earlier.status == 200
    warm(stack, patched, deleted, decoy, still)
    eventually(lambda: stack.cached(gone["id"]) == TOMBSTONE, "the earlier tombstone cached")
    ids = [patched["id"], deleted["id"], decoy["id"], still["id"], gone["id"]]
    since = time.monotonic()
    with Readers(stack, ids) as readers:
        time.sleep(0.2)
        old, killed_at = stack.kill("redis")
        stack.wait_replaced("redis", old, killed_at)
        done = patch_twice_delete_twice(stack, patched, deleted, decoy, {"fault": "restarted"})
        time.sleep(1.5)
    done.append(op("delete", gone["id"], earlier))
    settled(stack, [*done, *readers.ops()], *ids, since=since, figures=figures, what="restarted empty")
