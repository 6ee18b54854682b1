"""The response cache on Redis/Valkey.

One module owns the key format and the TTLs. An entry is ``"<version>:<session json>"``; a deleted session
is the tombstone ``"!"``. Every fill goes through one Lua script that refuses to overwrite a tombstone or a
newer version, so a read that was in flight when a PATCH or DELETE committed can never put the old state
back. Failures are a miss (logged, counted, traced): the cache is an optimisation, never an outage.
"""

from __future__ import annotations

import json

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from session_service.models import Session
from session_service.observability import annotate, count, logger
from session_service.ports import CACHE_MISS, CacheLookup
from session_service.settings import Settings

KEY_PREFIX = "session:v1"
TOMBSTONE = "!"

# KEYS[1] entry key; ARGV: version, session json, ttl seconds. Returns 1 when written.
_GUARDED_FILL = """
local current = redis.call('GET', KEYS[1])
if current then
  if current == '!' then return 0 end
  local stored = tonumber(string.match(current, '^(%d+):'))
  if stored and stored >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[2], 'EX', ARGV[3])
return 1
"""


def cache_key(project_id: str, session_id: str) -> str:
    return f"{KEY_PREFIX}:{project_id}:{session_id}"


class RedisResponseCache:
    def __init__(self, settings: Settings) -> None:
        self._ttl = settings.cache_ttl_seconds
        self._tombstone_ttl = settings.cache_tombstone_ttl_seconds
        self._client = redis.Redis(
            host=settings.redis_host or "localhost",
            port=settings.redis_port,
            ssl=settings.redis_tls,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
            retry=Retry(NoBackoff(), retries=0),  # the cache is optional: fail fast, fall back to DynamoDB
            decode_responses=True,
        )
        self._fill_script = self._client.register_script(_GUARDED_FILL)

    def _failed(self, operation: str, error: Exception) -> None:
        logger.warning("cache unavailable", extra={"operation": operation, "error": repr(error)})
        count("CacheErrors")
        annotate("cache_error", operation)

    def get(self, project_id: str, session_id: str) -> CacheLookup:
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
        _, _, body = str(raw).partition(":")
        try:
            parsed = json.loads(body)
        except ValueError as error:  # a corrupt entry is a miss, never a 500
            self._failed("decode", error)
            return CACHE_MISS
        count("CacheHits")
        return CacheLookup(body=parsed)

    def fill(self, session: Session) -> None:
        payload = json.dumps(session.to_api(), separators=(",", ":"))
        try:
            self._fill_script(
                keys=[cache_key(session.project_id, session.session_id)],
                args=[session.version, payload, self._ttl],
            )
        except redis.RedisError as error:
            self._failed("fill", error)

    def tombstone(self, project_id: str, session_id: str) -> bool:
        try:
            self._client.set(cache_key(project_id, session_id), TOMBSTONE, ex=self._tombstone_ttl)
        except redis.RedisError as error:
            self._failed("tombstone", error)
            return False
        return True


class NoCache:
    """Used when no cache is configured (e.g. a function that never reads sessions)."""

    def get(self, project_id: str, session_id: str) -> CacheLookup:
        return CACHE_MISS

    def fill(self, session: Session) -> None:
        return None

    def tombstone(self, project_id: str, session_id: str) -> bool:
        return True  # nothing is cached, so nothing can be served
