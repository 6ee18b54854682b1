"""Invalidation that cannot be lost: every committed change of a session reaches the cache from the sessions
table's stream, retried until Redis takes it.

The request path already writes the cache after each change, and raises the cache epoch when that write
fails (session_service.services.cache_epoch). This is the backstop for what the request path cannot promise: a
writer that died between its commit and its cache write, an epoch write that failed too, and changes made
by other functions (teardown's purge). It never writes a body — only a tombstone for a deleted session, or a
version floor that stops any older version from being filled or served — so a late or duplicated stream
record can never make the cache serve anything older than the database has.
"""

from __future__ import annotations

from session_service.domain.events import SessionChange
from session_service.domain.ports import CacheInvalidator
from session_service.observability import count

__all__ = ["CacheSync", "SessionChange"]


class CacheSync:
    def __init__(self, invalidator: CacheInvalidator) -> None:
        self._invalidator = invalidator

    def apply(self, change: SessionChange) -> None:
        """Raises CacheUnavailable: the record fails and the stream delivers it again."""
        if change.deleted:
            self._invalidator.tombstone(change.project_id, change.session_id)
        else:
            self._invalidator.floor(change.project_id, change.session_id, change.version)
        count("CacheInvalidationsApplied")
