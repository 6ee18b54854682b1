"""Rate limits: a token bucket per credential (an API key, or a session token), held in Redis.

Every request takes one token from its credential's *general* bucket; a request that spends compute
(execute, a tool call, MCP tools/call) also takes one from its *compute* bucket, in the same atomic call, so
neither is spent unless both have a token. A bucket holds a minute's worth of requests (its limit) and refills
continuously at limit/60 a second.

The limits are the stack's defaults or the project's own (session-admin set-limits). The authorizer resolves
them (`ProjectLimits`, cached per process) and hands them to the route with the credential, so a route
function makes exactly one Redis call per request and no database read.

Redis down, hung or refusing: fail open. The request goes through unchecked, counted (RateLimitFailOpen) and
logged by the adapter, whose breaker then skips Redis for a second. A limiter must never be the reason a
request fails; API Gateway's stage throttling stays the coarse guard meanwhile.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from session_service.domain.entities import BucketLevel
from session_service.domain.errors import DependencyUnavailable, RateLimited
from session_service.domain.ports import ProjectStore, TokenBuckets
from session_service.observability import count, logger

GENERAL, COMPUTE = "general", "compute"


@dataclass(frozen=True)
class RateLimits:
    per_minute: int
    compute_per_minute: int


@dataclass(frozen=True)
class LimitDecision:
    """What a client is told: the bucket that decided (the refusing one, else the one with the fewest
    tokens left) in the RateLimit-* headers of the IETF httpapi draft, and when to retry."""

    allowed: bool
    level: BucketLevel

    @property
    def retry_after_s(self) -> int:
        return max(1, math.ceil(self.level.ms_to_next / 1000))

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.level.limit),
            "RateLimit-Remaining": str(self.level.remaining),
            "RateLimit-Reset": str(math.ceil(self.level.ms_to_full / 1000)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    def __init__(self, buckets: TokenBuckets) -> None:
        self._buckets = buckets

    def check(
        self, project_id: str, credential: str, limits: RateLimits, *, compute: bool = False
    ) -> LimitDecision | None:
        """The decision for one request (None: not checked, the store did not answer). Raises RateLimited
        when a bucket is empty; nothing is taken from any bucket then."""
        wanted = [(GENERAL, limits.per_minute)]
        if compute:
            wanted.append((COMPUTE, limits.compute_per_minute))
        taken = self._buckets.take(project_id, credential, wanted)
        if taken is None:
            count("RateLimitFailOpen")
            return None
        if taken.allowed:
            return LimitDecision(True, min(taken.levels, key=lambda level: level.remaining))
        refusing = max((lv for lv in taken.levels if lv.remaining < 1), key=lambda lv: lv.ms_to_next)
        decision = LimitDecision(False, refusing)
        count("RateLimited")
        raise RateLimited(
            f"rate limit of {refusing.limit} requests a minute reached; retry after "
            f"{decision.retry_after_s} s",
            headers=decision.headers(),
        )


class ProjectLimits:
    """A project's effective limits, read from its record at most once per `ttl_seconds` per process (a
    changed limit applies within that time, plus the API key authorizer's cache TTL). A failed read means
    the defaults, for a shorter while: limits never make authentication fail."""

    def __init__(
        self,
        projects: ProjectStore | None,
        defaults: RateLimits,
        *,
        ttl_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._projects = projects
        self._defaults = defaults
        self._ttl = ttl_seconds
        self._monotonic = monotonic
        self._known: dict[str, tuple[float, RateLimits]] = {}

    def for_project(self, project_id: str, *, may_read: bool = True) -> RateLimits:
        """`may_read=False`: what is known, else the defaults, without a database read (a caller short of
        time: the authorizer after a slow key lookup)."""
        now = self._monotonic()
        known = self._known.get(project_id)
        if known is not None and known[0] > now:
            return known[1]
        if not may_read:
            count("ProjectLimitsSkipped")
            return self._defaults
        limits, ttl = self._read(project_id)
        if len(self._known) >= 10_000:  # a bound, not an LRU: a process sees few projects
            self._known.clear()
        self._known[project_id] = (now + ttl, limits)
        return limits

    def _read(self, project_id: str) -> tuple[RateLimits, float]:
        if self._projects is None:
            return self._defaults, self._ttl
        try:
            project = self._projects.get(project_id)
        except DependencyUnavailable as error:
            logger.warning("project limits unavailable; using the defaults", extra={"error": error.message})
            count("ProjectLimitsUnavailable")
            return self._defaults, min(self._ttl, 5.0)
        if project is None:
            return self._defaults, self._ttl
        return (
            RateLimits(
                per_minute=project.rate_limit_per_minute or self._defaults.per_minute,
                compute_per_minute=project.compute_rate_limit_per_minute or self._defaults.compute_per_minute,
            ),
            self._ttl,
        )
