"""Counting a function's I/O as it happens, not as we think it happens.

- AWS: a botocore `before-parameter-build` handler (once per API call, with its parameters, so the
  table too) in botocore's list of built-in handlers, which every botocore
  session registers when it is created (boto3's and PynamoDB's alike, one per thread for PynamoDB), so
  `install()` must run before the first session exists. One event per API call the code makes (an SDK
  retry is the same call); `before-send` counts the HTTP attempts as well.
- Redis: what the server received, from a MONITOR connection, leaving out what a Lua script ran inside the
  server (a guarded fill is one EVALSHA on the wire) and the meter's own markers. A snapshot waits until
  the monitor has seen a marker sent after everything before it, so the counts are exact, not eventual.
  A script run on the rate limiter's buckets (its first key under `adapters.redis_limits.KEY_PREFIX`) is
  counted as RATE_LIMIT, apart from the cache's commands: every HTTP route takes its tokens in one such
  call, which is neither a cache read nor a cache write.
- E2B: the local E2B API's request log.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import botocore.handlers

DYNAMODB_READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
REDIS_WRITES = {"set", "setex", "evalsha", "eval", "del", "unlink", "expire"}
RATE_LIMIT = "evalsha(rate limit)"  # the token-bucket script (session_service.adapters.redis_limits)

_lock = threading.Lock()
_calls: Counter[str] = Counter()  # "dynamodb.GetItem" -> calls
_attempts: Counter[str] = Counter()  # HTTP requests, retries included
_tables: Counter[str] = Counter()  # "dynamodb.GetItem <table>" -> calls
_installed = False


def _before_parameter_build(event_name: str = "", params: dict[str, Any] | None = None, **_: Any) -> None:
    _, service, operation = event_name.split(".", 2)  # before-parameter-build.<service>.<Operation>
    key = f"{service}.{operation}"
    with _lock:
        _calls[key] += 1
        table = (params or {}).get("TableName")
        if table:
            _tables[f"{key} {table}"] += 1


def _before_send(event_name: str = "", **_: Any) -> None:
    _, service, operation = event_name.split(".", 2)
    with _lock:
        _attempts[f"{service}.{operation}"] += 1


def install() -> None:
    """Register the handlers for every botocore session created from now on (idempotent)."""
    global _installed
    if _installed:
        return
    botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _before_parameter_build))
    botocore.handlers.BUILTIN_HANDLERS.append(("before-send", _before_send))
    _installed = True


@dataclass
class IO:
    """What one piece of work did: AWS API calls, HTTP attempts, Redis commands, E2B requests."""

    aws: Counter[str] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    tables: Counter[str] = field(default_factory=Counter)
    redis: Counter[str] = field(default_factory=Counter)
    e2b: Counter[str] = field(default_factory=Counter)

    def __add__(self, other: IO) -> IO:
        return IO(
            self.aws + other.aws,
            self.attempts + other.attempts,
            self.tables + other.tables,
            self.redis + other.redis,
            self.e2b + other.e2b,
        )

    def service(self, name: str) -> Counter[str]:
        return Counter({k.split(".", 1)[1]: v for k, v in self.aws.items() if k.startswith(f"{name}.")})

    @property
    def dynamodb_reads(self) -> int:
        return sum(v for k, v in self.service("dynamodb").items() if k in DYNAMODB_READS)

    @property
    def dynamodb_writes(self) -> int:
        return sum(v for k, v in self.service("dynamodb").items() if k in DYNAMODB_WRITES)

    @property
    def redis_writes(self) -> int:
        """Writes to the response cache (the rate limiter's script is not one: `rate_limit_calls`)."""
        return sum(v for k, v in self.redis.items() if k in REDIS_WRITES)

    @property
    def rate_limit_calls(self) -> int:
        return self.redis.get(RATE_LIMIT, 0)

    @property
    def cache_commands(self) -> Counter[str]:
        return Counter({k: v for k, v in self.redis.items() if k != RATE_LIMIT})

    def table_calls(self, table: str) -> Counter[str]:
        """Operation (GetItem...) -> calls on that table."""
        found: Counter[str] = Counter()
        for key, calls in self.tables.items():
            operation, _, name = key.partition(" ")
            if name == table:
                found[operation.split(".", 1)[1]] += calls
        return found

    @staticmethod
    def _short(counter: Counter[str]) -> str:
        return " ".join(f"{name}x{n}" if n > 1 else name for name, n in sorted(counter.items()) if n) or "-"

    def describe(self, service: str) -> str:
        if service == "redis":  # the cache's commands; the limiter's call has a column of its own
            return self._short(self.cache_commands)
        if service == "e2b":
            return self._short(self.e2b)
        return self._short(self.service(service))

    def other_aws(self) -> str:
        return self._short(
            Counter({k: v for k, v in self.aws.items() if not k.startswith(("dynamodb.", "sqs."))})
        )


class RedisMonitor:
    """Commands clients sent to redis-server (MONITOR), counted by name; Lua's inner calls left out."""

    def __init__(self, client: Any) -> None:
        from session_service.adapters.redis_limits import KEY_PREFIX

        self._limiter_prefix = f"{KEY_PREFIX}:"
        self._client = client
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._seen: set[str] = set()
        self._arrived = threading.Condition(self._lock)
        self._monitor = client.monitor().__enter__()
        self._thread = threading.Thread(target=self._read, name="bench-redis-monitor", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                entry = self._monitor.next_command()
            except Exception:  # the server went away at the end of the run
                return
            if entry is None or entry.get("client_type") == "lua":
                continue
            words = str(entry["command"]).split(" ", 4)
            name = words[0].lower()
            if name in ("evalsha", "eval") and self._on_limiter_keys(words):
                name = RATE_LIMIT
            with self._lock:
                if name == "echo" and len(words) > 1 and words[1].startswith("bench-marker-"):
                    self._seen.add(words[1])
                    self._arrived.notify_all()
                else:
                    self._counts[name] += 1

    def _on_limiter_keys(self, words: list[str]) -> bool:
        """EVALSHA <sha> <numkeys> <key> ...: a script whose first key is a rate-limit bucket."""
        return len(words) > 3 and words[2] not in ("", "0") and words[3].startswith(self._limiter_prefix)

    def close(self) -> None:
        """Stop monitoring (MONITOR slows the server down: never leave it on while something is timed)."""
        self._monitor.connection.disconnect()
        self._thread.join(timeout=5)

    def counts(self) -> Counter[str]:
        """Everything received before this call (the marker's round trip orders it)."""
        marker = f"bench-marker-{uuid.uuid4().hex}"
        self._client.echo(marker)
        with self._lock:
            if not self._arrived.wait_for(lambda: marker in self._seen, timeout=10):
                raise RuntimeError("the Redis monitor fell behind")
            self._seen.discard(marker)
            return Counter(self._counts)


Snapshot = tuple[Counter[str], Counter[str], Counter[str], Counter[str], int]


class Meter:
    """`meter.since(meter.snapshot())` is the I/O that happened in between."""

    _monitors: dict[int, RedisMonitor] = {}

    def __init__(self, redis_client: Any = None, e2b: Any = None) -> None:
        install()
        self._redis: RedisMonitor | None = None
        if redis_client is not None:
            if id(redis_client) not in Meter._monitors:
                Meter._monitors[id(redis_client)] = RedisMonitor(redis_client)
            self._redis = Meter._monitors[id(redis_client)]
        self._e2b = e2b

    def close(self) -> None:
        for key, monitor in list(Meter._monitors.items()):
            if monitor is self._redis:
                monitor.close()
                del Meter._monitors[key]
        self._redis = None

    def _e2b_log(self) -> list[tuple[str, str, int]]:
        return [] if self._e2b is None else self._e2b.request_log

    def snapshot(self) -> Snapshot:
        with _lock:
            aws, attempts, tables = Counter(_calls), Counter(_attempts), Counter(_tables)
        redis_counts = self._redis.counts() if self._redis is not None else Counter()
        return aws, attempts, tables, redis_counts, len(self._e2b_log())

    def since(self, before: Snapshot) -> IO:
        aws, attempts, tables, redis, e2b_count = self.snapshot()
        log = self._e2b_log()[before[4] : e2b_count]
        return IO(
            aws - before[0],
            attempts - before[1],
            tables - before[2],
            redis - before[3],
            Counter(f"{method} {_route(path)}" for method, path, _ in log),
        )


def _route(path: str) -> str:
    """/sandboxes/<id>/pause -> /sandboxes/{id}/pause: one row per kind of E2B request."""
    parts = path.split("/")
    for index in range(1, len(parts) - 1):
        if parts[index] == "sandboxes" and parts[index + 1]:
            parts[index + 1] = "{id}"
    return "/".join(parts)
