"""The rate limiter's decisions over a fake bucket store, a project's limits (cached, defaults on failure),
and what the idempotency store keeps of a large response. The Lua buckets themselves run against a real
redis-server in tests/integration/test_rate_limits.py."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from fakes import FakeProjectStore
from session_service.adapters.idempotency import MAX_STORED_BYTES, StoredResponse
from session_service.domain.entities import BucketLevel, BucketTake, Project
from session_service.domain.errors import DependencyUnavailable, RateLimited
from session_service.services.limits import ProjectLimits, RateLimiter, RateLimits


class Buckets:
    def __init__(self, outcome: BucketTake | None) -> None:
        self.outcome = outcome
        self.asked: list[tuple[str, str, list[tuple[str, int]]]] = []

    def take(self, project_id: str, credential: str, buckets: list[tuple[str, int]]) -> BucketTake | None:
        self.asked.append((project_id, credential, buckets))
        return self.outcome


LIMITS = RateLimits(per_minute=600, compute_per_minute=60)


def test_a_compute_request_takes_from_both_buckets_and_reports_the_tighter() -> None:
    buckets = Buckets(BucketTake(True, [BucketLevel(600, 599, 0, 100), BucketLevel(60, 7, 0, 53_000)]))
    decision = RateLimiter(buckets).check("prj_1", "key:abc", LIMITS, compute=True)
    assert buckets.asked == [("prj_1", "key:abc", [("general", 600), ("compute", 60)])]
    assert decision is not None and decision.headers() == {
        "RateLimit-Limit": "60",
        "RateLimit-Remaining": "7",
        "RateLimit-Reset": "53",
    }


def test_a_refusal_names_the_empty_bucket_and_when_to_retry() -> None:
    buckets = Buckets(BucketTake(False, [BucketLevel(600, 12, 0, 5_000), BucketLevel(60, 0, 400, 60_000)]))
    with pytest.raises(RateLimited) as refused:
        RateLimiter(buckets).check("prj_1", "token:t1", LIMITS, compute=True)
    assert refused.value.headers == {
        "RateLimit-Limit": "60",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "60",
        "Retry-After": "1",  # 400 ms, rounded up to whole seconds
    }
    assert "60 requests a minute" in refused.value.message


def test_an_unanswered_store_is_not_a_refusal() -> None:
    assert RateLimiter(Buckets(None)).check("prj_1", "key:abc", LIMITS) is None


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FlakyProjects(FakeProjectStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.down = False

    def get(self, project_id: str) -> Project | None:
        self.reads += 1
        if self.down:
            raise DependencyUnavailable("down")
        return super().get(project_id)


def test_a_projects_limits_are_read_once_per_ttl_and_default_when_unset_or_unreadable() -> None:
    projects, clock = FlakyProjects(), Clock()
    projects.create(Project("prj_own", "own", "t", rate_limit_per_minute=5))
    limits = ProjectLimits(projects, LIMITS, ttl_seconds=60, monotonic=clock)
    assert limits.for_project("prj_own") == RateLimits(5, 60)  # its own general, the default compute
    assert limits.for_project("prj_own") == RateLimits(5, 60) and projects.reads == 1
    projects.set_limits("prj_own", 7, 3)
    clock.now = 59.0
    assert limits.for_project("prj_own") == RateLimits(5, 60)  # still the cached record
    clock.now = 61.0
    assert limits.for_project("prj_own") == RateLimits(7, 3) and projects.reads == 2

    projects.down = True
    assert limits.for_project("prj_unknown") == LIMITS  # never fails authentication
    clock.now = 67.0  # an unreadable record is retried sooner than a read one
    limits.for_project("prj_unknown")
    assert projects.reads == 4


def test_a_large_response_is_stored_compressed_and_cut_to_fit() -> None:
    noise = base64.b64encode(os.urandom(600_000)).decode()  # incompressible: ~800 KB of text
    body: dict[str, Any] = {"stdout": noise, "stdout_truncated": False, "stderr": "", "exit_code": 0}
    serializer = StoredResponse()
    stored = serializer.to_dict({"status": 200, "body": body})
    assert len(stored["gzip"]) <= MAX_STORED_BYTES
    assert body["stdout"] == noise and body["stdout_truncated"] is False  # the first response is untouched
    replay = serializer.from_dict(json.loads(json.dumps(stored)))
    assert replay["status"] == 200 and replay["body"]["stdout_truncated"] is True
    assert noise.startswith(replay["body"]["stdout"]) and len(replay["body"]["stdout"]) < len(noise)

    small = {"status": 201, "body": {"id": "ses_1"}}
    assert serializer.from_dict(serializer.to_dict(small)) == small


def test_short_of_time_the_authorizer_uses_what_it_knows_or_the_defaults() -> None:
    projects, clock = FlakyProjects(), Clock()
    projects.create(Project("prj_own", "own", "t", rate_limit_per_minute=5, compute_rate_limit_per_minute=2))
    limits = ProjectLimits(projects, LIMITS, ttl_seconds=60, monotonic=clock)
    assert limits.for_project("prj_own", may_read=False) == LIMITS and projects.reads == 0
    assert limits.for_project("prj_own") == RateLimits(5, 2) and projects.reads == 1
    assert limits.for_project("prj_own", may_read=False) == RateLimits(5, 2) and projects.reads == 1
