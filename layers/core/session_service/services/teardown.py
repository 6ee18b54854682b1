"""Deleting a session's compute and content after its tombstone: the SQS-driven teardown and the sweeper.

The tombstone (deleted_at on the session item) is the source of truth. Teardown is idempotent and only
ever tears down tombstoned sessions, so a duplicate, late or replayed message is harmless; anything it
cannot finish raises TeardownIncomplete and the message is retried (then dead-lettered, then re-enqueued
by the sweeper while the tombstone still says 'pending'). A run given a deadline starts no kill after it:
the kills it did not start count as failed, so the message comes back and the next run lists them again.

A message about a live session is the workbench's check after a failed create (E2B may have created the
sandbox after our call gave up): it kills the session's sandboxes other than the one the session records,
and nothing else of the session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from session_service.domain import clock
from session_service.domain.entities import TeardownReport, Tombstone
from session_service.domain.errors import SandboxRateLimited, SandboxUnavailable, TeardownIncomplete
from session_service.domain.ports import (
    ContentKeyStore,
    MessageStore,
    SandboxProvider,
    SessionStore,
    TeardownQueue,
    TokenStore,
)
from session_service.domain.requests import TeardownMessage
from session_service.observability import annotate, count, logger

_KILL_ATTEMPTS = 5


class Teardown:
    def __init__(
        self,
        store: SessionStore,
        sandboxes: SandboxProvider,
        queue: TeardownQueue,
        tokens: TokenStore | None = None,
        messages: MessageStore | None = None,
        content_keys: ContentKeyStore | None = None,
        *,
        max_messages_per_run: int = 500,
        max_sandboxes_per_run: int = 100,
        kill_concurrency: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], str] = clock.utc_now_iso,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._sandboxes = sandboxes
        self._queue = queue
        self._tokens = tokens
        self._messages = messages
        self._content_keys = content_keys
        self._max_messages = max_messages_per_run
        self._max_per_run = max_sandboxes_per_run
        self._concurrency = kill_concurrency
        self._sleep = sleep
        self._now = now
        self._monotonic = monotonic

    def run(self, message: TeardownMessage, deadline: float | None = None) -> TeardownReport:
        """`deadline` (time.monotonic()): no kill starts after it (the caller keeps room for one to end)."""
        project_id, session_id = message.project_id, message.session_id
        session = self._store.get(project_id, session_id)
        if session is None:
            logger.info("teardown: session already purged", extra={"session_id": session_id})
            if self._content_keys is not None:  # its tombstone expired first: its key must not outlive it
                self._content_keys.destroy_session_key(project_id, session_id)
            return TeardownReport("skipped")
        if not session.is_deleted:
            return self._kill_strays(project_id, session_id, deadline)
        if self._content_keys is not None and session.key_destroyed_at is None:
            # First, before anything is purged: without its key, every copy of the session's content (the
            # tables' point-in-time recovery included) is unreadable from this moment.
            self._content_keys.destroy_session_key(project_id, session_id)
            self._store.record_key_destroyed(project_id, session_id, self._now())
            count("SessionKeysDestroyed")
        # A session already marked done is listed again all the same: a late message (e.g. from a fenced-out
        # execute whose kill failed) may be about a straggler. Listing an empty session is one cheap call.
        listing = self._sandboxes.list_session_sandboxes(project_id, session_id, self._max_per_run)
        failures = self._kill_all(listing.sandbox_ids, deadline)
        killed = len(listing.sandbox_ids) - len(failures)
        if failures:
            count("SandboxKillFailures", len(failures))
            annotate("teardown_failed", session_id)
            self._store.record_teardown(project_id, session_id, killed=killed, done_at=None)
            raise TeardownIncomplete(
                f"{len(failures)} sandbox kill(s) failed or not started in time for {session_id}: "
                f"{failures[:5]}"
            )
        if listing.truncated:
            # More sandboxes than one run may kill: count these and hand the rest to a fresh message.
            self._store.record_teardown(project_id, session_id, killed=killed, done_at=None)
            if not self._queue.send(Tombstone(project_id, session_id, message.deleted_at)):
                raise TeardownIncomplete(f"could not re-enqueue the rest of {session_id}'s teardown")
            return TeardownReport("continued", killed)
        if session.teardown_state == "done":
            if killed:
                self._store.record_teardown(project_id, session_id, killed=killed, done_at=None)
            return TeardownReport("done" if killed else "skipped", killed)
        if self._tokens is not None:
            count("SessionTokensPurged", self._tokens.purge_session(project_id, session_id))
        purged = 0
        if self._messages is not None:
            # In batches: a large conversation is purged over several runs, each continuing where the last
            # one stopped (its deletes are gone from the partition, so nothing is read twice).
            purged, all_gone = self._messages.purge(project_id, session_id, self._max_messages)
            count("MessagesPurged", purged)
            if not all_gone:
                self._store.record_teardown(
                    project_id, session_id, killed=killed, done_at=None, messages_purged=purged
                )
                if not self._queue.send(Tombstone(project_id, session_id, message.deleted_at)):
                    raise TeardownIncomplete(f"could not re-enqueue the rest of {session_id}'s purge")
                return TeardownReport("continued", killed)
        self._store.record_teardown(
            project_id, session_id, killed=killed, done_at=self._now(), messages_purged=purged
        )
        count("TeardownsCompleted")
        logger.info("teardown done", extra={"session_id": session_id, "sandboxes_killed": killed})
        return TeardownReport("done", killed)

    def _kill_strays(self, project_id: str, session_id: str, deadline: float | None) -> TeardownReport:
        """A live session keeps its recorded sandbox; any other one that carries its metadata came from a
        create whose caller gave up (or lost the fence and could not kill it). The session is read after the
        listing, so a sandbox recorded meanwhile is kept. One being created right now for the session (not
        yet recorded) may be killed: its execute then finds it gone and creates the next one."""
        listing = self._sandboxes.list_session_sandboxes(project_id, session_id, self._max_per_run)
        session = self._store.get(project_id, session_id)
        if session is None or session.is_deleted:
            return TeardownReport("skipped")  # deleted meanwhile: that DELETE's own teardown lists them
        strays = [sandbox_id for sandbox_id in listing.sandbox_ids if sandbox_id != session.sandbox_id]
        failures = self._kill_all(strays, deadline)
        if failures:
            count("SandboxKillFailures", len(failures))
            raise TeardownIncomplete(f"{len(failures)} stray sandbox kill(s) failed for {session_id}")
        if strays:
            count("StraySandboxesKilled", len(strays))
            logger.info("killed stray sandboxes", extra={"session_id": session_id, "sandbox_ids": strays})
        return TeardownReport("strays" if strays else "skipped", len(strays))

    def _kill_all(self, sandbox_ids: list[str], deadline: float | None) -> list[str]:
        """Kill with bounded concurrency; returns the ids that were not killed (failed or not started)."""
        if not sandbox_ids:
            return []
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(sandbox_ids))) as pool:
            outcomes = list(pool.map(lambda sandbox_id: self._kill_one(sandbox_id, deadline), sandbox_ids))
        return [sandbox_id for sandbox_id, ok in zip(sandbox_ids, outcomes, strict=True) if not ok]

    def _kill_one(self, sandbox_id: str, deadline: float | None) -> bool:
        for attempt in range(_KILL_ATTEMPTS):
            left = None if deadline is None else deadline - self._monotonic()
            if left is not None and left <= 0:
                count("SandboxKillsDeferred")  # not started: the retried message lists it again
                return False
            try:
                self._sandboxes.kill(sandbox_id)  # False (already gone) counts as done
                return True
            except SandboxRateLimited:
                count("SandboxKillThrottled")
                backoff = min(0.2 * 2**attempt, 5.0)
                self._sleep(backoff if left is None else min(backoff, left))
            except SandboxUnavailable as error:
                logger.warning(
                    "sandbox kill failed", extra={"sandbox_id": sandbox_id, "error": error.message}
                )
                return False
        return False


class Sweeper:
    """Re-enqueues teardowns still pending after a grace period: covers a lost send, a crash between the
    tombstone and the send, and messages that went to the dead-letter queue."""

    def __init__(
        self,
        store: SessionStore,
        queue: TeardownQueue,
        *,
        grace_seconds: int,
        batch_limit: int = 500,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._queue = queue
        self._grace = grace_seconds
        self._limit = batch_limit
        self._now = now

    def sweep(self) -> int:
        cutoff = clock.iso(datetime.fromtimestamp(self._now() - self._grace, UTC))
        pending = self._store.pending_teardowns(deleted_before=cutoff, limit=self._limit)
        sent = sum(1 for tombstone in pending if self._queue.send(tombstone))
        count("TeardownsReenqueued", sent)
        if sent < len(pending):
            raise TeardownIncomplete(f"re-enqueued {sent} of {len(pending)} pending teardowns")
        return sent
