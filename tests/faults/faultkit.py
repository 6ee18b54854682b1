"""A dev stack (`python -m devstack`, as `make dev` runs it) whose services a test hangs, kills and lets
restart, and a client of it that records when each request started and ended.

Faults are real process faults: SIGSTOP/SIGCONT (a hang: connections stay open, nothing answers) and
SIGKILL (the dev stack replaces a dead redis-server with an empty one after `--restart-delay`). Every fault
is recorded with its interval, so that a history can tell a 503 during a fault from one outside any.
Nothing of our own code is patched: the stack runs its functions in worker processes with their template
environment, and this module only talks HTTP to it, reads its tables and lists its sandboxes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import redis
from e2b import Sandbox, SandboxQuery, SandboxState
from faults.history import Final, Op

from session_service.adapters.redis_cache import cache_key
from session_service.domain.entities import Session
from session_service.runtime import container_for
from session_service.settings import Settings

SERVICES = ("redis", "moto", "e2b")
RESTART_DELAY = 1.5  # seconds a killed redis-server stays down before the stack replaces it
LATE_CREATE_GRACE = 3  # seconds from a failed sandbox create to the check that kills what it left


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    started: float  # time.monotonic() when the request was sent
    ended: float  # ... and when its answer was read

    @property
    def took(self) -> float:
        return self.ended - self.started

    @property
    def code(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("code") if isinstance(error, dict) else None


@dataclass(frozen=True)
class Fault:
    service: str
    kind: str  # "hang" | "kill"
    started: float
    ended: float  # when the service answered again (resumed, or its replacement was up)

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class FaultyStack:
    process: Any  # the dev stack's subprocess.Popen
    endpoints: dict[str, Any]
    faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- who is who -----------------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        return str(self.endpoints["projects"][0]["api_key"])

    @property
    def project_id(self) -> str:
        return str(self.endpoints["projects"][0]["project_id"])

    def pid(self, service: str) -> int:
        """The service's current pid (endpoints.json is rewritten when the stack restarts one)."""
        path = Path(self.endpoints["state_dir"]) / "endpoints.json"
        return int(json.loads(path.read_text())["pids"][service])

    # -- faults ---------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def hung(self, service: str, at_least: float = 0.0) -> Iterator[float]:
        """The service stops answering (SIGSTOP) for the block and at least `at_least` seconds; yields the
        time it stopped. Resumed (SIGCONT) whatever happens in the block."""
        pid = self.pid(service)
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            yield started
            time.sleep(max(0.0, started + at_least - time.monotonic()))
        finally:
            os.kill(pid, signal.SIGCONT)
            self._record(Fault(service, "hang", started, time.monotonic()))

    def kill(self, service: str = "redis") -> tuple[int, float]:
        """SIGKILL the service (only redis is replaced by the stack); (its pid, when)."""
        pid = self.pid(service)
        os.kill(pid, signal.SIGKILL)
        return pid, time.monotonic()

    def wait_replaced(self, service: str, old_pid: int, killed_at: float, within: float = 15.0) -> int:
        """Wait until the stack has replaced the killed service and the new one answers; its pid."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError, redis.RedisError):
                pid = self.pid(service)
                if pid != old_pid and self._ping():
                    self._record(Fault(service, "kill", killed_at, time.monotonic()))
                    return pid
            time.sleep(0.05)
        raise AssertionError(f"{service} was not replaced within {within}s")

    def faults_since(self, since: float, service: str | None = None) -> list[Fault]:
        with self._lock:
            return [f for f in self.faults if f.started >= since and service in (None, f.service)]

    def resume_all(self) -> None:
        for service in SERVICES:
            with contextlib.suppress(OSError, ValueError, KeyError):
                os.kill(self.pid(service), signal.SIGCONT)

    def _record(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    # -- the API, as a client uses it -----------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, *, key: str | None = None) -> Reply:
        request = urllib.request.Request(
            self.endpoints["api_url"] + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"content-type": "application/json", "x-api-key": key or self.key},
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        ended = time.monotonic()
        try:
            parsed = json.loads(raw or b"null")
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Reply(status, parsed, started, ended)

    def create(self, **body: Any) -> dict[str, Any]:
        reply = self.call("POST", "/v1/sessions", {"user_id": "faults", **body})
        assert reply.status == 201, reply
        return dict(reply.body)

    def get(self, session_id: str) -> Reply:
        return self.call("GET", f"/v1/sessions/{session_id}")

    def patch(self, session_id: str, body: dict[str, Any]) -> Reply:
        return self.call("PATCH", f"/v1/sessions/{session_id}", body)

    def delete(self, session_id: str) -> Reply:
        return self.call("DELETE", f"/v1/sessions/{session_id}")

    def execute(self, session_id: str, command: str = "echo ok") -> Reply:
        return self.call("POST", f"/v1/sessions/{session_id}/execute", {"command": command})

    def warm_up(self) -> None:
        """One request of each kind, so that the functions' workers are warm (a cold start takes ~1.5 s of
        imports) and what a test times is the fault, not the start."""
        session = self.create()
        for reply in (
            self.get(session["id"]),
            self.patch(session["id"], {"metadata": {"warm": True}}),
            self.execute(session["id"]),
            self.delete(session["id"]),
        ):
            assert reply.status == 200, reply

    # -- what is stored, cached and running -----------------------------------------------------------------

    def settings(self) -> Settings:
        tables = self.endpoints["tables"]
        return Settings(
            region=self.endpoints["region"],
            aws_endpoint_url=self.endpoints["aws_endpoint_url"],
            sessions_table=tables["SessionsTable"],
            projects_table=tables["ProjectsTable"],
            audit_table=tables["AuditTable"],
            keys_table=tables["KeysTable"],
            content_key_id=self.endpoints["kms_keys"]["ContentKey"],
        )

    def stored(self, session_id: str) -> Session | None:
        """The session item as DynamoDB (moto) holds it, tombstones included; a live one's metadata opened
        with its content key, as the service reads it."""
        services = container_for(self.settings())
        session = services.store.get(self.project_id, session_id)
        if session is None or session.is_deleted or session.sealed_metadata is None:
            return session
        metadata = services.cipher.open(self.project_id, session_id, "metadata", session.sealed_metadata)
        return session.evolve(metadata=metadata)

    def audit(self, session_id: str) -> list[dict[str, Any]]:
        return container_for(self.settings()).store.audit_entries(self.project_id, session_id)

    def redis(self) -> redis.Redis:
        url = self.endpoints["redis_url"]
        return redis.Redis.from_url(url, decode_responses=True, socket_timeout=1, protocol=2)

    def _ping(self) -> bool:
        with self.redis() as client:
            return bool(client.ping())

    def cached(self, session_id: str) -> str | None:
        """The raw cache entry (``!``, ``<version>:<as_of>:<json>`` or a floor ``<version>:-``)."""
        with self.redis() as client:
            value = client.get(cache_key(self.project_id, session_id))
        return None if value is None else str(value)

    def sandboxes(self, session_id: str) -> list[str]:
        """Running and paused sandboxes of the session, as the real e2b SDK lists them."""
        query = SandboxQuery(
            metadata={"project_id": self.project_id, "session_id": session_id},
            state=[SandboxState.RUNNING, SandboxState.PAUSED],
        )
        paginator = Sandbox.list(
            query=query,
            api_key=self.endpoints["e2b_api_key"],
            api_url=self.endpoints["e2b_api_url"],
            sandbox_url=self.endpoints["e2b_sandbox_url"],
        )
        found: list[str] = []
        while paginator.has_next:
            found += [info.sandbox_id for info in paginator.next_items()]
        return found


def eventually(condition: Callable[[], Any], what: str, within: float = 10.0, every: float = 0.1) -> Any:
    """The first truthy value of `condition()` within `within` seconds; fails the test with `what` if none."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s (last: {value!r})")
        time.sleep(every)


def unique() -> str:
    return uuid.uuid4().hex[:12]


class ClientThreads:
    """Client threads running `_run(n)` (n: the thread's number) until the block ends, then joined."""

    def __init__(self, threads: int) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def _run(self, number: int) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=70)


class Readers(ClientThreads):
    """Threads that GET sessions over and over, recording every reply, until stopped."""

    def __init__(self, stack: FaultyStack, session_ids: list[str], threads: int = 2) -> None:
        super().__init__(threads)
        self._stack = stack
        self._ids = session_ids
        self.replies: list[tuple[str, Reply]] = []

    def _run(self, number: int) -> None:
        turn = number
        while not self._stop.is_set():
            session_id = self._ids[turn % len(self._ids)]
            turn += 1
            reply = self._stack.get(session_id)
            with self._lock:
                self.replies.append((session_id, reply))

    def of(self, session_id: str) -> list[Reply]:
        with self._lock:
            return [reply for sid, reply in self.replies if sid == session_id]

    def ops(self) -> list[Op]:
        """Every read as an operation of the history checker."""
        with self._lock:
            return [op("get", session_id, reply) for session_id, reply in self.replies]


def op(kind: str, session_id: str, reply: Reply) -> Op:
    """A reply as an operation of the history checker (faults.history)."""
    body = reply.body if isinstance(reply.body, dict) and reply.status in (200, 201) else {}
    version = body.get("version") if kind in ("create", "get", "patch") else None
    return Op(kind, session_id, reply.started, reply.ended, reply.status, version, body.get("metadata"))


def final_state(stack: FaultyStack, session_id: str) -> Final:
    """The session as stored, and as a GET serves it now."""
    stored = stack.stored(session_id)
    served = stack.get(session_id)
    body = served.body if served.status == 200 and isinstance(served.body, dict) else {}
    return Final(
        stored_deleted=None if stored is None else stored.is_deleted,
        stored_version=None if stored is None else stored.version,
        stored_metadata=None if stored is None else stored.metadata,
        served_status=served.status,
        served_version=body.get("version"),
        served_metadata=body.get("metadata"),
    )


def patch_twice_delete_twice(
    stack: FaultyStack, patched: dict, deleted: dict, decoy: dict, marker: dict[str, Any]
) -> list[Op]:
    """Two PATCHes of one session (metadata `marker` + n) and two DELETEs: while Redis fails, the second of
    each runs in the same worker as the first, which found Redis failing, so its cache write is not even
    tried (lost for certain)."""
    done = []
    for n in (1, 2):
        reply = stack.patch(patched["id"], {"metadata": {**marker, "n": n}})
        assert reply.status == 200, reply
        done.append(op("patch", patched["id"], reply))
    for session in (decoy, deleted):
        reply = stack.delete(session["id"])
        assert reply.status == 200, reply
        done.append(op("delete", session["id"], reply))
    return done
