"""What the edge costs (issue 10: rate limits, idempotency keys), measured in one run on this machine.

1. The hit path: GetSessionFunction on a cache hit with the rate limiter (the authorizer's context carries
   the caller's limits, so the limiter makes its one Redis call) against the same request without it,
   interleaved, plus the bare round trip of the limiter's Lua script (EVALSHA) for comparison.
2. Cold start: importing each route module that takes an Idempotency-Key, in a fresh interpreter, against a
   bare `import boto3` (budget: 1.5x), whether that import loads Powertools' idempotency utility (it must
   not: it is imported when a request carries the header), and what that utility adds when it is
   imported (`python -X importtime`, cumulative, after the module is loaded).

Run: .venv/bin/python bench/edge.py   (needs nothing running; starts moto and redis-server itself)
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

from devstack.functions import InProcessInvoker, LocalEndpoints, local_overrides
from devstack.provision import provision
from devstack.services import MotoServer, RedisServer
from devstack.template import Template

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ROUNDS = 400
IDEMPOTENT = ("create_session", "execute", "call_tool", "append_message")
UTILITY = "aws_lambda_powertools.utilities.idempotency"


def event(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / name).read_text()))


def interleaved_ms(a: Callable[[], Any], b: Callable[[], Any], rounds: int = ROUNDS) -> tuple[float, float]:
    """Medians of a and b, alternated call by call so that load on the machine hits both alike."""
    for _ in range(20):
        a(), b()
    times_a, times_b = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        a()
        times_a.append(time.perf_counter() - started)
        started = time.perf_counter()
        b()
        times_b.append(time.perf_counter() - started)
    return statistics.median(times_a) * 1000, statistics.median(times_b) * 1000


def hit_path() -> None:
    template = Template.load(ROOT / "template.yaml")
    with MotoServer() as moto, RedisServer() as cache:
        resources = provision(
            template,
            endpoint_url=moto.url,
            region=REGION,
            redis_host=cache.host,
            redis_port=cache.port,
            e2b_api_key="unused",
        )
        overrides = local_overrides(LocalEndpoints(moto.url, REGION))
        invoker = InProcessInvoker(template, resources, overrides)
        for name, value in overrides.items():
            os.environ.setdefault(name, value)
        from session_service.runtime import container_for
        from session_service.settings import Settings

        admin = container_for(
            Settings(
                region=REGION,
                aws_endpoint_url=moto.url,
                projects_table=resources.ref("ProjectsTable"),
                api_keys_table=resources.ref("ApiKeysTable"),
            )
        ).admin
        project = admin.create_project("bench").project_id
        plain = {"project_id": project}
        limited = {
            **plain,
            "credential": "key:bench",
            "rate_limit_per_minute": 1_000_000_000,  # never refuses: the cost of asking, not of a 429
            "compute_rate_limit_per_minute": 1_000_000_000,
        }
        create = event("create_session.json")
        create["body"], create["requestContext"]["authorizer"] = '{"user_id": "bench"}', {"lambda": plain}
        with contextlib.redirect_stdout(io.StringIO()):
            session_id = json.loads(invoker.invoke("CreateSessionFunction", create)["body"])["id"]

        def get(context: dict[str, Any]) -> dict[str, Any]:
            data = event("get_session.json")
            data["rawPath"] = f"/v1/sessions/{session_id}"
            data["pathParameters"] = {"session_id": session_id}
            data["requestContext"]["authorizer"] = {"lambda": context}
            return data

        with_limit, without = get(limited), get(plain)
        with contextlib.redirect_stdout(io.StringIO()):  # metrics are EMF lines on stdout
            first = invoker.invoke("GetSessionFunction", copy.deepcopy(with_limit))
            assert first["statusCode"] == 200 and "RateLimit-Limit" in first["headers"], first
            time.sleep(1.1)  # past the cache epoch's first read: every call below is a plain cache hit
            limited_ms, plain_ms = interleaved_ms(
                lambda: invoker.invoke("GetSessionFunction", copy.deepcopy(with_limit)),
                lambda: invoker.invoke("GetSessionFunction", copy.deepcopy(without)),
            )
        import redis

        from session_service.adapters.redis_limits import _TAKE, bucket_key

        client = redis.Redis(host=cache.host, port=cache.port, protocol=2)
        script = client.register_script(_TAKE)
        keys = [bucket_key(project, "key:raw", "general")]
        lua_ms, get_ms = interleaved_ms(
            lambda: script(keys=keys, args=[1_000_000_000]), lambda: client.get("session:v2:x:y")
        )
    print("GET /v1/sessions/{id}, cache hit (in-process handler, median of", ROUNDS, "interleaved calls)")
    print(f"  with the rate limiter      {limited_ms:8.3f} ms")
    print(f"  without                    {plain_ms:8.3f} ms")
    overhead, ratio = limited_ms - plain_ms, limited_ms / plain_ms
    print(f"  limiter overhead           {overhead:8.3f} ms   (budget 1 ms; ratio {ratio:.2f})")
    print(f"  bare Lua take (EVALSHA)    {lua_ms:8.3f} ms   (a plain redis GET: {get_ms:.3f} ms)")


def _run(source: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", source], check=True, capture_output=True, text=True, cwd=ROOT
    )


def _wall(source: str) -> float:
    started = time.perf_counter()
    _run(source)
    return time.perf_counter() - started


def cold_start(rounds: int = 9) -> None:
    """Each module against `import boto3` in alternating fresh interpreters (load hits both alike)."""
    empty = statistics.median(_wall("pass") for _ in range(5))
    print()
    print(
        f"cold start: module import in a fresh interpreter vs `import boto3`, alternated, median of {rounds}"
    )
    for name in IDEMPOTENT:
        app = str(ROOT / "functions" / name / "app.py")
        load = f"import runpy, sys; runpy.run_path({app!r}); print({UTILITY!r} in sys.modules)"
        loaded = _run(load).stdout.strip() == "True"
        module_s, boto3_s = [], []
        for _ in range(rounds):
            module_s.append(_wall(load))
            boto3_s.append(_wall("import boto3"))
        module_ms = (statistics.median(module_s) - empty) * 1000
        boto3_ms = (statistics.median(boto3_s) - empty) * 1000
        timed = _run(f"import runpy; runpy.run_path({app!r}); import {UTILITY}", "-X", "importtime").stderr
        pattern = rf"^import time:\s+\d+ \|\s+(\d+) \|\s*{re.escape(UTILITY)}$"
        utility_us = max((int(m) for m in re.findall(pattern, timed, re.MULTILINE)), default=0)
        print(
            f"  functions/{name + '/app.py':<24} {module_ms:5.0f} ms vs boto3 {boto3_ms:4.0f} ms ="
            f" {module_ms / boto3_ms:.2f}x (budget 1.5x); idempotency utility loaded: {loaded};"
            f" importing it (and boto3) then adds {utility_us / 1000:.0f} ms"
        )


if __name__ == "__main__":
    hit_path()
    cold_start()
