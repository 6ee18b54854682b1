"""Token buckets on Redis/Valkey: one Lua call per request takes a token from every bucket it names, or from
none of them.

Key ``rl:{<project_id>:<credential>}:<bucket>``: the braces are a hash tag, so a credential's buckets live in
one slot and one script may touch them all (ElastiCache Serverless is a cluster: a multi-key script across
slots fails with CROSSSLOT). Value ``<tokens>:<at_ms>``; a bucket refills limit/60 tokens a second up to
`limit` and expires once it would be full again (an absent bucket is a full one). The clock is the server's
(TIME), so functions with skewed clocks agree on every bucket.

Failures fail open: logged and counted once per failure, then a breaker skips Redis for
REDIS_BREAKER_SECONDS, so a hung Redis costs a process one socket timeout a second, as the cache does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from session_service.domain.entities import BucketLevel, BucketTake
from session_service.observability import count, logger
from session_service.settings import Settings

KEY_PREFIX = "rl"

# KEYS: the buckets; ARGV[i]: bucket i's limit a minute.
# Returns {allowed, then per bucket: limit, whole tokens left, ms to the next token, ms to full}.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local levels, allowed = {}, 1
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i])
  local tokens = limit
  local stored = redis.call('GET', key)
  if stored then
    local left, at = string.match(stored, '^([%d%.]+):(%d+)$')
    if left then
      tokens = math.min(limit, tonumber(left) + math.max(0, now - tonumber(at)) * limit / 60000)
    end
  end
  levels[i] = tokens
  if tokens < 1 then allowed = 0 end
end
local out = {allowed}
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i])
  local per_ms = limit / 60000
  local tokens = levels[i]
  if allowed == 1 then
    tokens = tokens - 1
    local full_in = math.ceil((limit - tokens) / per_ms)
    redis.call('SET', key, string.format('%.6f', tokens) .. ':' .. now, 'PX', full_in + 1000)
  end
  out[#out + 1] = limit
  out[#out + 1] = math.floor(tokens)
  out[#out + 1] = math.ceil(math.max(0, 1 - tokens) / per_ms)
  out[#out + 1] = math.ceil((limit - tokens) / per_ms)
end
return out
"""


def bucket_key(project_id: str, credential: str, bucket: str) -> str:
    return f"{KEY_PREFIX}:{{{project_id}:{credential}}}:{bucket}"


class RedisTokenBuckets:
    def __init__(
        self, settings: Settings, client: redis.Redis, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._script = client.register_script(_TAKE)
        self._breaker_seconds = settings.redis_breaker_seconds
        self._monotonic = monotonic
        self._closed_until = 0.0

    def take(self, project_id: str, credential: str, buckets: list[tuple[str, int]]) -> BucketTake | None:
        if self._monotonic() < self._closed_until:
            return None
        keys = [bucket_key(project_id, credential, name) for name, _ in buckets]
        try:
            raw = self._script(keys=keys, args=[limit for _, limit in buckets])
        except redis.RedisError as error:
            logger.warning("rate limiter unavailable; failing open", extra={"error": repr(error)})
            count("RateLimiterErrors")
            self._closed_until = self._monotonic() + self._breaker_seconds
            return None
        values = [int(value) for value in raw]
        levels = [BucketLevel(*values[i : i + 4]) for i in range(1, len(values), 4)]
        return BucketTake(allowed=values[0] == 1, levels=levels)
