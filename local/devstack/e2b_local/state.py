"""Sandbox records and their lifecycle behind one lock: what the local E2B API knows, with no HTTP in it.

Status codes live here (as `ApiError`) because they *are* the behaviour being emulated: 404 for an absent
sandbox, 409 for pausing a paused one, and so on, exactly as the real control plane answers.
"""

from __future__ import annotations

import os
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devstack.e2b_local.errors import ApiError, RpcError
from devstack.e2b_local.fs import HOME, USER, SandboxFS, remove_tree
from devstack.e2b_local.process import Abort, Ending, RunningProcess, Subscription, groups_with_members

__all__ = ["ApiError", "Registry", "RpcError", "Sandbox"]

RUNNING = "running"
PAUSED = "paused"
STATES = (RUNNING, PAUSED)
# envd's current version (infra's packages/envd/pkg/version.go), so the SDK takes every path it has: no
# username or Basic auth header (>= 0.4.0), close_stdin allowed (>= 0.5.2), octet-stream and gzip uploads
# (>= 0.5.7), upload metadata (>= 0.6.2). Watching directories and PTYs are not emulated (`unimplemented`).
ENVD_VERSION = "0.6.13"
DEFAULT_TIMEOUT = 15  # seconds: the API's default when a request omits it
MAX_TIMEOUT = 86_400  # the API refuses anything above 24 h
PRUNE_SECONDS = 2.0  # how often finished commands whose groups emptied are reaped (one /proc scan)
RETAIN_EXIT_SECONDS = 30.0  # envd keeps a finished command's end event this long for a late Connect

# How in-flight command streams end when their sandbox goes away under them; the SDK maps `canceled` to a
# TimeoutException ("cancelled ... when the sandbox is paused") and `unavailable` plus a failing /health probe
# to SandboxNotRunningException, as against the real service.
PAUSED_ABORT = Abort("canceled", "the sandbox was paused while the command was running")
KILLED_ABORT = Abort("unavailable", "the connection to the sandbox ended before the stream completed")

_ID_ALPHABET = string.ascii_lowercase + string.digits


def _new_id(length: int = 20) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def isoformat(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_timeout(value: Any, *, default: int = DEFAULT_TIMEOUT) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIMEOUT:
        raise ApiError(400, f"timeout must be an integer between 0 and {MAX_TIMEOUT} seconds")
    return value


def check_str_map(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ApiError(400, f"{name} must be an object of string values")
    return dict(value)


@dataclass(eq=False)
class Sandbox:
    sandbox_id: str
    seq: int
    template_id: str
    client_id: str
    access_token: str
    metadata: dict[str, str]
    env_vars: dict[str, str]
    auto_pause: bool
    auto_resume: bool
    timeout: int
    started_at: float
    end_at: float
    workdir: Path  # the host directory that stands for the sandbox's `/`
    fs: SandboxFS
    state: str = RUNNING
    processes: dict[int, RunningProcess] = field(default_factory=dict)  # running commands, by pid
    # Finished commands whose process groups may still have members (`server &`): killed with the
    # sandbox, reaped once their groups are found empty.
    leftovers: list[RunningProcess] = field(default_factory=list)
    # Finished commands' endings for a late Connect, by pid: (monotonic expiry, tag, ending).
    exited: dict[int, tuple[float, str | None, Ending]] = field(default_factory=dict)

    def snapshot(self) -> dict[str, Any]:
        """The Python-side view handed to tests: plain data, safe to keep after the sandbox is gone."""
        return {
            "sandbox_id": self.sandbox_id,
            "state": self.state,
            "metadata": dict(self.metadata),
            "template_id": self.template_id,
            "env_vars": dict(self.env_vars),
            "auto_pause": self.auto_pause,
            "auto_resume": self.auto_resume,
            "started_at": datetime.fromtimestamp(self.started_at, UTC),
            "end_at": datetime.fromtimestamp(self.end_at, UTC),
            "workdir": str(self.workdir),
            "home": str(self.fs.home),
            "processes": sorted(self.processes),
        }

    def created(self) -> dict[str, Any]:
        """The `Sandbox` body of create/connect/resume."""
        return {
            "templateID": self.template_id,
            "alias": self.template_id,
            "sandboxID": self.sandbox_id,
            "clientID": self.client_id,
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": self.access_token,
            "trafficAccessToken": None,
            "domain": None,
        }

    def listed(self) -> dict[str, Any]:
        """The `ListedSandbox` body of the list endpoints."""
        return {
            "templateID": self.template_id,
            "alias": self.template_id,
            "sandboxID": self.sandbox_id,
            "clientID": self.client_id,
            "startedAt": isoformat(self.started_at),
            "endAt": isoformat(self.end_at),
            "cpuCount": 2,
            "memoryMB": 512,
            "diskSizeMB": 1024,
            "metadata": dict(self.metadata),
            "state": self.state,
            "envdVersion": ENVD_VERSION,
        }

    def detail(self) -> dict[str, Any]:
        """The `SandboxDetail` body of GET /sandboxes/{id}."""
        return {
            **self.listed(),
            "envdAccessToken": self.access_token,
            "domain": None,
            "lifecycle": {
                "autoResume": self.auto_resume,
                "onTimeout": "pause" if self.auto_pause else "kill",
            },
        }


class Registry:
    """All sandboxes, one re-entrant lock. Slow work (deleting directories) happens outside it."""

    def __init__(self, root: Path, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self._clock = clock
        self._lock = threading.RLock()
        self._sandboxes: dict[str, Sandbox] = {}
        self._idempotency: dict[str, str] = {}
        self._seq = 0
        self._closed = False
        self._pruned_at = 0.0

    # -- control plane -------------------------------------------------------------------------------------

    def create(
        self,
        *,
        template_id: str,
        timeout: int,
        metadata: dict[str, str],
        env_vars: dict[str, str],
        auto_pause: bool,
        auto_resume: bool,
        idempotency_key: str | None = None,
    ) -> Sandbox:
        with self._lock:
            if self._closed:
                raise ApiError(503, "the local E2B API is shutting down")
            if idempotency_key and (
                existing := self._sandboxes.get(self._idempotency.get(idempotency_key, ""))
            ):
                return existing
            now = self._clock()
            self._seq += 1
            sandbox_id = _new_id()
            workdir = self.root / sandbox_id
            workdir.mkdir(parents=True)
            fs = SandboxFS.create(workdir)
            sandbox = Sandbox(
                sandbox_id=sandbox_id,
                seq=self._seq,
                template_id=template_id,
                client_id=secrets.token_hex(4),
                access_token=secrets.token_urlsafe(24),
                metadata=metadata,
                env_vars=env_vars,
                auto_pause=auto_pause,
                auto_resume=auto_resume,
                timeout=timeout,
                started_at=now,
                end_at=now + timeout,
                workdir=workdir,
                fs=fs,
            )
            self._sandboxes[sandbox_id] = sandbox
            if idempotency_key:
                self._idempotency[idempotency_key] = sandbox_id
            return sandbox

    def get(self, sandbox_id: str) -> Sandbox | None:
        with self._lock:
            return self._sandboxes.get(sandbox_id)

    def require(self, sandbox_id: str) -> Sandbox:
        sandbox = self.get(sandbox_id)
        if sandbox is None:
            raise ApiError(404, f"sandbox {sandbox_id!r} not found")
        return sandbox

    def kill(self, sandbox_id: str) -> None:
        with self._lock:
            sandbox = self.require(sandbox_id)
            del self._sandboxes[sandbox_id]
            self._stop_processes(sandbox, KILLED_ABORT)
        _delete(sandbox)

    def pause(self, sandbox_id: str) -> None:
        with self._lock:
            sandbox = self.require(sandbox_id)
            if sandbox.state == PAUSED:
                raise ApiError(409, f"sandbox {sandbox_id!r} is already paused")
            self._pause(sandbox)

    def connect(self, sandbox_id: str, timeout: int) -> tuple[Sandbox, bool]:
        """Connecting resumes a paused sandbox (True) and otherwise only ever extends its end time (False)."""
        with self._lock:
            sandbox = self.require(sandbox_id)
            now = self._clock()
            if sandbox.state == PAUSED:
                self._resume(sandbox, timeout)
                return sandbox, True
            sandbox.end_at = max(sandbox.end_at, now + timeout)
            return sandbox, False

    def resume(self, sandbox_id: str, timeout: int, auto_pause: bool | None) -> Sandbox:
        """The legacy POST /sandboxes/{id}/resume: only for paused sandboxes."""
        with self._lock:
            sandbox = self.require(sandbox_id)
            if sandbox.state == RUNNING:
                raise ApiError(409, f"sandbox {sandbox_id!r} is already running")
            if auto_pause is not None:
                sandbox.auto_pause = auto_pause
            self._resume(sandbox, timeout)
            return sandbox

    def set_timeout(self, sandbox_id: str, timeout: int) -> None:
        """Sets the end time to now + timeout, shorter or longer; only a running sandbox has one."""
        with self._lock:
            sandbox = self.require(sandbox_id)
            if sandbox.state != RUNNING:
                raise ApiError(404, f"sandbox {sandbox_id!r} is not running")
            sandbox.timeout = timeout
            sandbox.end_at = self._clock() + timeout

    def refresh(self, sandbox_id: str, duration: int) -> None:
        with self._lock:
            sandbox = self.require(sandbox_id)
            if sandbox.state != RUNNING:
                raise ApiError(404, f"sandbox {sandbox_id!r} is not running")
            sandbox.end_at = max(sandbox.end_at, self._clock() + duration)

    def query(
        self,
        *,
        metadata: dict[str, str] | None = None,
        states: tuple[str, ...] = STATES,
        template: str | None = None,
        started_after: float | None = None,
    ) -> list[Sandbox]:
        """Sandboxes matching every metadata pair exactly, oldest first (creation order breaks ties)."""
        with self._lock:
            found = [
                sandbox
                for sandbox in self._sandboxes.values()
                if sandbox.state in states
                and all(sandbox.metadata.get(key) == value for key, value in (metadata or {}).items())
                and (template is None or sandbox.template_id == template)
                and (started_after is None or sandbox.started_at > started_after)
            ]
        return sorted(found, key=lambda sandbox: sandbox.seq)

    def snapshots(
        self, *, metadata: dict[str, str] | None = None, states: tuple[str, ...] = STATES
    ) -> list[dict[str, Any]]:
        with self._lock:
            return [sandbox.snapshot() for sandbox in self.query(metadata=metadata, states=states)]

    # -- envd ----------------------------------------------------------------------------------------------

    def spawn(
        self,
        sandbox: Sandbox,
        config: dict[str, Any],
        *,
        user: str = USER,
        home: str = HOME,
        stdin: bool,
        tag: str | None,
        deadline: float | None,
    ) -> tuple[RunningProcess, Subscription]:
        """Start a command (ProcessConfig `config`, as sent) with the Start stream subscribed to it from
        its first byte, and hand it to its supervisor; under the lock so a concurrent pause/kill cannot
        miss it."""
        with self._lock:
            if self._closed or self._sandboxes.get(sandbox.sandbox_id) is not sandbox:
                raise RpcError("unavailable", "the sandbox was not found")
            if sandbox.state != RUNNING:
                raise RpcError("unavailable", "the sandbox is paused")
            directory = resolve_cwd(sandbox.fs, config.get("cwd"), home)
            env = command_env(sandbox, config["envs"], user, home)
            try:
                process = RunningProcess(
                    [config["cmd"], *config["args"]],
                    cwd=directory,
                    env=env,
                    config=config,
                    stdin=stdin,
                    tag=tag,
                    deadline=deadline,
                )
            except OSError as error:
                raise RpcError("invalid_argument", f"error starting process: {error}") from error
            sandbox.processes[process.pid] = process
            sandbox.exited.pop(process.pid, None)  # a late Connect must not get a previous owner's exit
            subscription = process.subscribe()
            process.supervise(lambda ended: self.ended(sandbox, ended))
            return process, subscription

    def processes(self, sandbox: Sandbox) -> dict[int, RunningProcess]:
        with self._lock:
            return dict(sandbox.processes)

    def find_exited(self, sandbox: Sandbox, pid: int | None, tag: str | None) -> tuple[int, Ending] | None:
        """A command that ended within RETAIN_EXIT_SECONDS, by pid or tag: (pid, its ending)."""
        with self._lock:
            now = time.monotonic()
            for known, (expiry, known_tag, ending) in list(sandbox.exited.items()):
                if expiry <= now:
                    del sandbox.exited[known]
                elif known == pid or (tag is not None and known_tag == tag):
                    return known, ending
        return None

    def ended(self, sandbox: Sandbox, process: RunningProcess) -> None:
        """The supervisor's last word on a command: keep its ending for a late Connect (unless its sandbox
        was paused or killed under it), then forget it."""
        with self._lock:
            running = self._sandboxes.get(sandbox.sandbox_id) is sandbox and sandbox.state == RUNNING
            if running and process.ending is not None and sandbox.processes.get(process.pid) is process:
                sandbox.exited[process.pid] = (
                    time.monotonic() + RETAIN_EXIT_SECONDS,
                    process.tag,
                    process.ending,
                )
        self.forget(sandbox, process)

    def forget(self, sandbox: Sandbox, process: RunningProcess) -> None:
        """The command's stream is over. While its sandbox runs, its group is kept (to be killed with the
        sandbox) until a prune pass finds it empty; otherwise the leader is reaped now. (No /proc scan per
        command: one pass every PRUNE_SECONDS looks at every kept group at once.)"""
        with self._lock:
            if sandbox.processes.get(process.pid) is process:
                del sandbox.processes[process.pid]
            running = self._sandboxes.get(sandbox.sandbox_id) is sandbox and sandbox.state == RUNNING
            if running and not self._closed:
                sandbox.leftovers.append(process)
                return
        process.release()

    # -- housekeeping --------------------------------------------------------------------------------------

    def reap(self) -> None:
        """Apply each expired running sandbox's on-timeout action: pause if it asked to, otherwise kill.
        Every PRUNE_SECONDS, also reap finished commands whose process groups have emptied."""
        self._prune()
        doomed: list[Sandbox] = []
        with self._lock:
            now = self._clock()
            for sandbox in list(self._sandboxes.values()):
                if sandbox.state != RUNNING or sandbox.end_at > now:
                    continue
                if sandbox.auto_pause:
                    self._pause(sandbox)
                else:
                    del self._sandboxes[sandbox.sandbox_id]
                    self._stop_processes(sandbox, KILLED_ABORT)
                    doomed.append(sandbox)
        for sandbox in doomed:
            _delete(sandbox)

    def expire(self, sandbox_id: str) -> None:
        """Make a running sandbox's end time now, then reap: a test's shortcut to 'its timeout passed'."""
        with self._lock:
            sandbox = self.require(sandbox_id)
            if sandbox.state == RUNNING:
                sandbox.end_at = self._clock()
        self.reap()

    def close(self) -> None:
        """Refuse new sandboxes and commands from now on, then kill every sandbox's process groups."""
        with self._lock:
            self._closed = True
        self.reset()

    def kill_all_now(self) -> None:
        """SIGKILL every known process group without waiting for the lock (a forced exit); best effort."""
        try:
            sandboxes = list(self._sandboxes.values())
            processes = [p for s in sandboxes for p in (*list(s.processes.values()), *list(s.leftovers))]
        except RuntimeError:  # changed while being read: take what the next call sees
            return
        for process in processes:
            process.kill(KILLED_ABORT)

    def reset(self) -> None:
        with self._lock:
            sandboxes = list(self._sandboxes.values())
            self._sandboxes.clear()
            self._idempotency.clear()
            for sandbox in sandboxes:
                self._stop_processes(sandbox, KILLED_ABORT)
        for sandbox in sandboxes:
            _delete(sandbox)

    # -- internals (call with the lock held) ---------------------------------------------------------------

    def _pause(self, sandbox: Sandbox) -> None:
        """Keep the directory (the 'snapshot'), lose the processes: like a filesystem-only pause."""
        sandbox.state = PAUSED
        self._stop_processes(sandbox, PAUSED_ABORT)
        sandbox.exited.clear()

    def _resume(self, sandbox: Sandbox, timeout: int) -> None:
        sandbox.state = RUNNING
        sandbox.timeout = timeout
        sandbox.end_at = self._clock() + timeout

    @staticmethod
    def _stop_processes(sandbox: Sandbox, abort: Abort) -> None:
        """Kill every group of the sandbox: running commands (their streams then end with `abort`) and what
        finished commands left behind (whose exited leaders are reaped now)."""
        for process in list(sandbox.processes.values()):
            process.kill(abort)
        leftovers, sandbox.leftovers = sandbox.leftovers, []
        for process in leftovers:
            process.kill()
        for process in leftovers:
            process.release()

    def _prune(self) -> None:
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_SECONDS:
            return
        self._pruned_at = now
        with self._lock:
            candidates = [(sandbox, p) for sandbox in self._sandboxes.values() for p in sandbox.leftovers]
        if not candidates:
            return
        alive = groups_with_members({process.pid for _, process in candidates})
        with self._lock:
            for sandbox, process in candidates:
                if process.pid not in alive and process in sandbox.leftovers:
                    sandbox.leftovers.remove(process)
                    process.release()


def _delete(sandbox: Sandbox) -> None:
    """A killed sandbox's files go with it (outside any lock: a big tree takes a while)."""
    remove_tree(sandbox.workdir)


def resolve_cwd(fs: SandboxFS, cwd: str | None, home: str = HOME) -> Path:
    """The host directory for a requested cwd, resolved as envd resolves it (none: the home; relative:
    under the home; `~`), and kept inside the sandbox; a missing one is `invalid_argument`, as in envd."""
    sandbox_path = fs.expand(cwd or home, home)
    directory = fs.follow(sandbox_path)
    if not directory.is_dir():
        raise RpcError("invalid_argument", f"cwd '{sandbox_path}' does not exist")
    return directory


def command_env(sandbox: Sandbox, envs: dict[str, str], user: str = USER, home: str = HOME) -> dict[str, str]:
    """A small, predictable environment: not the host's (no credentials leak into 'sandbox' commands).
    HOME is the host directory that stands for the user's home: commands are host processes."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(sandbox.fs.follow(home)),
        "USER": user,
        "LOGNAME": user,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "E2B_SANDBOX": "true",
        "E2B_SANDBOX_ID": sandbox.sandbox_id,
        "E2B_TEMPLATE_ID": sandbox.template_id,
    }
    env.update(sandbox.env_vars)
    env.update(envs)
    return env
