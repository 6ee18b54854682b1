"""The cache epoch: how a process decides whether it can vouch for what Redis hands it.

A cache write that fails (Redis hung, partitioned or down) is a lost invalidation: Redis may still hold the
state from before the write, and once it answers again a reader would serve it — a deleted session comes
back, a PATCH reads back its old version. The writer cannot wait for Redis (the DELETE has committed), so it
raises the epoch in DynamoDB instead: "entries read from the database before time E are untrusted".

Every fill is tagged with the time its reader started the DynamoDB read (its *as-of* time); a reader accepts
a cached body only if that tag is at least the epoch it knows. A reader refreshes the epoch at most once a
second, and always before it trusts Redis again after Redis failed it. So after a failed invalidation, no
reader serves the older state once it has refreshed: at once if Redis was unreachable for a second or more
(the usual hang), within `refresh_seconds` otherwise (a partition that cut only the writer off).

The epoch is a wall-clock time in milliseconds. Writers set it `margin_ms` past their commit, which covers
clock skew between functions; it only ever grows (a conditional write). A writer whose known epoch already
covers its commit skips the write, so an outage costs about one epoch write per process per margin, not one
per request. The stream-driven invalidator (cache_sync) is the backstop when even the epoch write fails.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable

from session_service.domain.errors import DependencyUnavailable
from session_service.domain.ports import CacheEpochStore
from session_service.observability import count, logger


class CacheEpoch:
    def __init__(
        self,
        store: CacheEpochStore,
        *,
        copies: int = 4,
        refresh_seconds: float = 1.0,
        margin_ms: int = 2000,
        monotonic: Callable[[], float] = time.monotonic,
        copy: int | None = None,
    ) -> None:
        self._store = store
        # Readers spread over the copies (one DynamoDB partition each); writers raise them all. A process
        # picks its copy at its first read, at random: not from its pid, which every execution environment
        # restored from one SnapStart snapshot shares (and not before the snapshot: no read happens then).
        self._copies = max(1, copies)
        self._copy: int | None = None if copy is None else copy % self._copies
        self._refresh = refresh_seconds
        self._margin = margin_ms
        self._monotonic = monotonic
        self._known = 0  # the highest epoch this process has seen or written
        self._fetched_at: float | None = None  # monotonic time of the last successful read
        self._lock = threading.Lock()

    def current(self) -> int | None:
        """The epoch to validate a cached body against; None when it cannot be learned (trust nothing)."""
        with self._lock:
            fresh = self._fetched_at is not None and self._monotonic() - self._fetched_at < self._refresh
            if fresh:
                return self._known
        if self._copy is None:
            self._copy = secrets.randbelow(self._copies)
        try:
            value = self._store.read(self._copy)
        except DependencyUnavailable:
            count("CacheEpochReadFailures")
            return None
        with self._lock:
            self._known = max(self._known, value)
            self._fetched_at = self._monotonic()
            return self._known

    def suspect(self) -> None:
        """Redis failed this process: re-read the epoch before trusting Redis again (another process's
        invalidation may have been lost in the same outage)."""
        with self._lock:
            self._fetched_at = None

    def invalidate_before(self, committed_ms: int) -> bool:
        """Make every cached body read before `committed_ms` untrusted. False if the epoch store failed too
        (the stream-driven invalidator is then the only path left; logged and counted)."""
        target = committed_ms + self._margin
        with self._lock:
            if self._known >= committed_ms + self._margin // 2:
                return True  # an epoch this process already knows covers the commit, with margin for skew
        try:
            self._store.raise_to(target)
        except DependencyUnavailable:
            logger.error("could not raise the cache epoch after a failed cache write")
            count("CacheEpochWriteFailures")
            return False
        count("CacheEpochRaised")
        with self._lock:
            self._known = max(self._known, target)
        return True
