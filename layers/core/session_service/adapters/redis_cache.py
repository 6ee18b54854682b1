"""The response cache on Redis/Valkey, and the stream-driven invalidator's writes to it.

One module owns the key format, the value format and the TTLs:

- ``!``                        a tombstone: the session is deleted; no fill can overwrite it (24 h)
- ``<version>:<as_of_ms>:<json>``  a body: the session at `version`, read from the database at or after
                                 `as_of_ms` (a wall-clock time) — validated against the cache epoch
- ``<version>:-``              a floor (from the invalidator): no version older than this may be filled

Every fill goes through one Lua script that refuses to overwrite a tombstone, a newer version, or the same
version read at a later time. So a read that was in flight when a PATCH or DELETE committed can never put
the old state back, and a reader that re-reads the current version refreshes an entry the epoch distrusts.

Reads and fills are best effort (a failure is a miss: logged, counted, traced; the cache is an
optimisation, never an outage). A failure opens a short breaker, so a hung Redis costs one socket timeout
per process, not one per request. Writers' invalidations either reach Redis or raise the cache epoch.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from session_service.domain.clock import now_ms
from session_service.domain.entities import Session
from session_service.domain.errors import CacheUnavailable
from session_service.domain.ports import CACHE_MISS, CacheEpochGuard, CacheLookup
from session_service.observability import annotate, count, logger
from session_service.settings import Settings

KEY_PREFIX = "session:v2"
TOMBSTONE = "!"
FLOOR = "-"

# KEYS[1] entry key; ARGV: version, as_of_ms, session json, ttl seconds. Returns 1 when written.
_GUARDED_FILL = """
local current = redis.call('GET', KEYS[1])
if current then
  if current == '!' then return 0 end
  local v, tag = string.match(current, '^(%d+):([^:]*)')
  local stored, version = tonumber(v), tonumber(ARGV[1])
  if stored then
    if stored > version then return 0 end
    if stored == version and tag ~= '-' then
      local t = tonumber(tag)
      if t and t >= tonumber(ARGV[2]) then return 0 end
    end
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[3], 'EX', ARGV[4])
return 1
"""

# KEYS[1] entry key; ARGV: version, ttl seconds. Returns 1 when written.
_FLOOR = """
local current = redis.call('GET', KEYS[1])
if current then
  if current == '!' then return 0 end
  local stored = tonumber(string.match(current, '^(%d+):'))
  if stored and stored >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':-', 'EX', ARGV[2])
return 1
"""


def cache_key(project_id: str, session_id: str) -> str:
    return f"{KEY_PREFIX}:{project_id}:{session_id}"


def redis_client(settings: Settings) -> redis.Redis:
    """RESP2 (what ElastiCache Serverless documents; redis-py 8 would otherwise send HELLO 3), TLS as the
    cloud requires, short timeouts and no retries: the caller decides what a failure means."""
    return redis.Redis(
        host=settings.redis_host or "localhost",
        port=settings.redis_port,
        ssl=settings.redis_tls,
        protocol=2,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry=Retry(NoBackoff(), retries=0),
        decode_responses=True,
    )


def parse_entry(raw: str) -> tuple[int, int | None, str] | None:
    """(version, as_of_ms or None for a floor, json) of a non-tombstone entry; None if unreadable."""
    version, _, rest = raw.partition(":")
    tag, _, body = rest.partition(":")
    try:
        return int(version), (None if tag == FLOOR else int(tag)), body
    except ValueError:
        return None


class RedisResponseCache:
    def __init__(
        self,
        settings: Settings,
        epoch: CacheEpochGuard,
        *,
        monotonic: Any = time.monotonic,
        client: redis.Redis | None = None,
    ) -> None:
        self._ttl = settings.cache_ttl_seconds
        self._tombstone_ttl = settings.cache_tombstone_ttl_seconds
        self._breaker_seconds = settings.redis_breaker_seconds
        self._epoch = epoch
        self._monotonic = monotonic
        self._closed_until = 0.0  # the breaker: no Redis calls before this monotonic time
        self._client = client if client is not None else redis_client(settings)  # shared with the limiter
        self._fill_script = self._client.register_script(_GUARDED_FILL)

    # -- failure handling ----------------------------------------------------------------------------------

    def _open(self) -> bool:
        return self._monotonic() >= self._closed_until

    def _failed(self, operation: str, error: Exception) -> None:
        logger.warning("cache unavailable", extra={"operation": operation, "error": repr(error)})
        count("CacheErrors")
        annotate("cache_error", operation)
        self._closed_until = self._monotonic() + self._breaker_seconds
        self._epoch.suspect()

    # -- reads ---------------------------------------------------------------------------------------------

    def get(self, project_id: str, session_id: str) -> CacheLookup:
        if not self._open():
            return CACHE_MISS
        try:
            raw = self._client.get(cache_key(project_id, session_id))
        except redis.RedisError as error:
            self._failed("get", error)
            return CACHE_MISS
        if raw is None:
            count("CacheMisses")
            return CACHE_MISS
        if raw == TOMBSTONE:
            return CacheLookup(tombstone=True)
        entry = parse_entry(str(raw))
        if entry is None or entry[1] is None:
            return CACHE_MISS  # unreadable, or a floor without a body
        epoch = self._epoch.current()
        if epoch is None or entry[1] < epoch:
            count("CacheDistrusted")  # filled before a lost invalidation (or the epoch is unknown)
            return CACHE_MISS
        try:
            body = json.loads(entry[2])
        except ValueError as error:  # a corrupt entry is a miss, never a 500
            logger.warning("corrupt cache entry", extra={"session_id": session_id, "error": repr(error)})
            count("CacheErrors")
            return CACHE_MISS
        count("CacheHits")
        return CacheLookup(body=body)

    def fill(self, session: Session, as_of_ms: int) -> None:
        self._fill(session, as_of_ms)

    def remember_deleted(self, project_id: str, session_id: str) -> None:
        self._set_tombstone(project_id, session_id)

    # -- writers' invalidations ----------------------------------------------------------------------------

    def publish(self, session: Session) -> None:
        committed = now_ms()  # called after the commit returned
        if not self._fill(session, committed):
            self._epoch.invalidate_before(committed)

    def tombstone(self, project_id: str, session_id: str) -> bool:
        committed = now_ms()
        if self._set_tombstone(project_id, session_id):
            return True
        self._epoch.invalidate_before(committed)
        return False

    # -- internals -----------------------------------------------------------------------------------------

    def _fill(self, session: Session, as_of_ms: int) -> bool:
        """True when Redis answered (whether or not the guard let the fill in)."""
        if not self._open():
            return False
        payload = json.dumps(session.to_api(), separators=(",", ":"))
        try:
            self._fill_script(
                keys=[cache_key(session.project_id, session.session_id)],
                args=[session.cache_version, as_of_ms, payload, self._ttl],
            )
        except redis.RedisError as error:
            self._failed("fill", error)
            return False
        return True

    def _set_tombstone(self, project_id: str, session_id: str) -> bool:
        if not self._open():
            return False
        try:
            self._client.set(cache_key(project_id, session_id), TOMBSTONE, ex=self._tombstone_ttl)
        except redis.RedisError as error:
            self._failed("tombstone", error)
            return False
        return True


class RedisCacheInvalidator:
    """The stream-driven invalidator's writes: they must land, so a failure raises (and is retried)."""

    def __init__(self, settings: Settings) -> None:
        self._ttl = settings.cache_ttl_seconds
        self._tombstone_ttl = settings.cache_tombstone_ttl_seconds
        self._client = redis_client(settings)
        self._floor_script = self._client.register_script(_FLOOR)

    def tombstone(self, project_id: str, session_id: str) -> None:
        try:
            self._client.set(cache_key(project_id, session_id), TOMBSTONE, ex=self._tombstone_ttl)
        except redis.RedisError as error:
            raise CacheUnavailable(repr(error)) from error

    def floor(self, project_id: str, session_id: str, version: int) -> None:
        try:
            self._floor_script(keys=[cache_key(project_id, session_id)], args=[version, self._ttl])
        except redis.RedisError as error:
            raise CacheUnavailable(repr(error)) from error


class NoCache:
    """Used when no cache is configured (e.g. a function that never reads sessions)."""

    def get(self, project_id: str, session_id: str) -> CacheLookup:
        return CACHE_MISS

    def fill(self, session: Session, as_of_ms: int) -> None:
        return None

    def publish(self, session: Session) -> None:
        return None

    def tombstone(self, project_id: str, session_id: str) -> bool:
        return True  # nothing is cached, so nothing can be served

    def remember_deleted(self, project_id: str, session_id: str) -> None:
        return None
