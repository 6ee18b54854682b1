"""A command running "inside" a local sandbox: a host subprocess that leads a process group of its own.

The group matters: `bash -l -c "sleep 5"` forks, and killing only bash would leave the child holding the
output pipes, so the stream would never end. Killing is always done to the whole group.

The group also outlives its leader: `server >/dev/null 2>&1 &` returns at once and leaves `server` running in
the group of the (exited) command. To reach such leftovers when the sandbox is paused or killed, a finished
command's leader is not reaped while its group still has members (where `waitid(WNOWAIT)` exists): an
unreaped leader keeps its pid, and therefore the group id, reserved, so the group can be killed later without
ever signalling a stranger that reused the number. The registry reaps kept leaders whose groups emptied.

The group stays in the server's session (`process_group=0`, not a new session): a supervisor that started
the server in a session of its own (the dev stack does) can sweep that session as a last resort.

Output is read by two threads into one queue so the HTTP handler can stream chunks as they arrive and still
notice deadlines and aborts while the process is quiet.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devstack.services import HAVE_PROCFS, live_processes

READ_CHUNK = 32 * 1024  # envd reads output in 32 KiB chunks as well
# waitid(WNOWAIT) reads an exit status without reaping, and /proc tells when a kept group has emptied.
# Without either (macOS), a finished command is reaped at once and its leftovers are only reached by the
# supervisor's session sweep.
_CAN_PEEK = hasattr(os, "waitid") and hasattr(os, "WNOWAIT") and HAVE_PROCFS


@dataclass(frozen=True)
class Abort:
    """Why a stream must end with a Connect error instead of an end event (the sandbox went away)."""

    code: str
    message: str


class RunningProcess:
    """One started command. Output events are ("stdout"|"stderr", bytes); None means both pipes closed."""

    def __init__(self, argv: list[str], *, cwd: Path, env: dict[str, str], config: dict[str, Any]) -> None:
        self.config = config
        self.tag: str | None = None
        self.abort: Abort | None = None
        self.events: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
            close_fds=True,
        )
        self.pid = self._popen.pid  # also the id of its process group
        self.returncode: int | None = None
        self._released = False
        self._open_pipes = 2
        self._lock = threading.RLock()  # re-entrant: a signal handler may kill while the main thread holds it
        assert self._popen.stdout is not None and self._popen.stderr is not None
        for name, pipe in (("stdout", self._popen.stdout), ("stderr", self._popen.stderr)):
            threading.Thread(
                target=self._pump, args=(name, pipe), name=f"e2b-local-{name}", daemon=True
            ).start()

    def _pump(self, name: str, pipe: IO[bytes]) -> None:
        fd = pipe.fileno()
        try:
            while chunk := os.read(fd, READ_CHUNK):
                self.events.put((name, chunk))
        except OSError:
            pass
        finally:
            pipe.close()
            with self._lock:
                self._open_pipes -= 1
                if self._open_pipes == 0:
                    self.events.put(None)

    def send_signal(self, signum: int) -> None:
        """Signal the whole process group; a group that is already gone (or released) is not an error."""
        with self._lock:
            if self._released:
                return  # the group id is no longer ours: it may belong to someone else by now
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signum)

    def kill(self, abort: Abort | None = None) -> None:
        if abort is not None and self.abort is None:
            self.abort = abort
        self.send_signal(signal.SIGKILL)

    def exit_status(self) -> int | None:
        """The leader's return code once it has exited (negative: killed by that signal), else None; the
        leader is not reaped, so the group id stays reserved until `release()`."""
        with self._lock:
            if self.returncode is None:
                self.returncode = self._peek() if _CAN_PEEK and not self._released else self._popen.poll()
            return self.returncode

    def wait_exit(self, timeout: float) -> int | None:
        """`exit_status()`, polling for at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while (status := self.exit_status()) is None and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        return status

    def release(self) -> None:
        """Reap the leader (its group id goes back to the system); SIGKILL the group first if it runs."""
        with self._lock:
            if self._released:
                return
            if self._popen.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._popen.wait(timeout=1)
            self._released = self._popen.returncode is not None

    def _peek(self) -> int | None:
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped already
            return self._popen.poll()
        if info is None or info.si_pid == 0:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def groups_with_members(groups: Collection[int]) -> set[int]:
    """Those of `groups` that still have a live (not zombie) process; all of them where /proc is missing."""
    if not groups:
        return set()
    if not HAVE_PROCFS:
        return set(groups)
    wanted = set(groups)
    return {info.pgid for info in live_processes() if info.pgid in wanted}


def end_event(returncode: int) -> dict[str, Any]:
    """The envd EndEvent for a return code, phrased like Go's ProcessState (exit -1 when signalled)."""
    if returncode >= 0:
        status = f"exit status {returncode}"
        event: dict[str, Any] = {"exited": True, "status": status}
        if returncode:
            event["exitCode"] = returncode
            event["error"] = status
        return event
    try:
        reason = (signal.strsignal(-returncode) or f"signal {-returncode}").lower()
    except ValueError:
        reason = f"signal {-returncode}"
    status = f"signal: {reason}"
    return {"exitCode": -1, "exited": False, "status": status, "error": status}
