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

Output is read by two threads into one bounded queue. A supervisor thread per command drains it: it fans
each chunk out to the streams subscribed at that moment (the Start stream, any number of Connect streams;
with none, output is dropped, as envd drops it), enforces the command's deadline, and once the pipes close
and the leader has exited, hands every subscriber the ending and tells the registry. So a command outlives
its streams: a client that disconnects only cancels its own subscription. Subscriptions are bounded too, so
a stream whose client does not read slows the command down (its pipe fills) instead of buffering without
end, as envd's unbuffered fan-out does.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from devstack.services import HAVE_PROCFS, live_processes

READ_CHUNK = 32 * 1024  # envd reads output in 32 KiB chunks as well
BUFFERED_CHUNKS = 64  # per queue: envd's output channel holds 64 events
POLL_SECONDS = 0.05  # how often a waiting supervisor looks at the deadline and aborts
# waitid(WNOWAIT) reads an exit status without reaping, and /proc tells when a kept group has emptied.
# Without either (macOS), a finished command is reaped at once and its leftovers are only reached by the
# supervisor's session sweep.
_CAN_PEEK = hasattr(os, "waitid") and hasattr(os, "WNOWAIT") and HAVE_PROCFS


@dataclass(frozen=True)
class Abort:
    """Why a stream must end with a Connect error instead of an end event (the sandbox went away)."""

    code: str
    message: str


DEADLINE_ABORT = Abort("deadline_exceeded", "the command's timeout passed; it was killed")

Output = tuple[str, bytes]  # ("stdout" | "stderr", chunk)


@dataclass(frozen=True)
class Ending:
    """How a command's streams end: its leader's return code, and the abort that ended it early, if any."""

    returncode: int
    abort: Abort | None


class Subscription:
    """One stream's share of a command's output: at most BUFFERED_CHUNKS chunks waiting, then the ending."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._chunks: deque[Output] = deque()
        self._ending: Ending | None = None
        self.cancelled = False

    def offer(self, chunk: Output, timeout: float) -> bool:
        """Queue a chunk, waiting up to `timeout` for room; False if there was none (a cancelled
        subscription takes, and drops, everything)."""
        with self._cond:
            if len(self._chunks) >= BUFFERED_CHUNKS and not self.cancelled:
                self._cond.wait(timeout)
            if self.cancelled:
                return True
            if len(self._chunks) >= BUFFERED_CHUNKS:
                return False
            self._chunks.append(chunk)
            self._cond.notify_all()
            return True

    def finish(self, ending: Ending) -> None:
        """The ending comes after the chunks already queued; never blocks."""
        with self._cond:
            self._ending = ending
            self._cond.notify_all()

    def next(self, timeout: float) -> Output | Ending | None:
        """The next chunk, else the ending, else (nothing within `timeout`) None."""
        with self._cond:
            if not self._chunks and self._ending is None:
                self._cond.wait(timeout)
            if self._chunks:
                chunk = self._chunks.popleft()
                self._cond.notify_all()
                return chunk
            return self._ending

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._chunks.clear()
            self._cond.notify_all()


class RunningProcess:
    """One started command. Output events are ("stdout"|"stderr", bytes); None means both pipes closed.

    `config` is the ProcessConfig as the client sent it (what envd's List reports); `deadline` is the
    monotonic time its Connect-Timeout-Ms runs out (None: never), after which it is killed.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        cwd: Path,
        env: dict[str, str],
        config: dict[str, Any],
        stdin: bool = False,
        tag: str | None = None,
        deadline: float | None = None,
    ) -> None:
        self.config = config
        self.tag = tag
        self.deadline = deadline
        self.abort: Abort | None = None
        self.ending: Ending | None = None
        self.events: queue.Queue[Output | None] = queue.Queue(maxsize=BUFFERED_CHUNKS)
        self._subscriptions: list[Subscription] = []
        self._stdin_lock = threading.Lock()
        self._popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            process_group=0,
            close_fds=True,
        )
        self.pid = self._popen.pid  # also the id of its process group
        if self._popen.stdin is not None:
            os.set_blocking(self._popen.stdin.fileno(), False)  # see write_stdin
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

    # -- streams ---------------------------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """Output from now on, then the ending (at once if the command has ended already)."""
        subscription = Subscription()
        with self._lock:
            if self.ending is not None:
                subscription.finish(self.ending)
            else:
                self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.cancel()
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)

    def supervise(self, on_end: Callable[[RunningProcess], None]) -> None:
        """Start the thread that owns the command from now on; `on_end` runs once it has ended."""
        threading.Thread(
            target=self._supervise, args=(on_end,), name=f"e2b-local-command-{self.pid}", daemon=True
        ).start()

    def _supervise(self, on_end: Callable[[RunningProcess], None]) -> None:
        try:
            while True:
                try:
                    item = self.events.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    self._check_deadline()
                    continue
                if item is None:
                    break
                self._fan_out(item)
            while (status := self.wait_exit(POLL_SECONDS)) is None:
                self._check_deadline()
            self._close_stdin_quietly()  # exec.Cmd.Wait closes the stdin pipe too
            with self._lock:
                self.ending = Ending(status, self.abort)
                subscriptions, self._subscriptions = self._subscriptions, []
            for subscription in subscriptions:
                subscription.finish(self.ending)
        finally:
            on_end(self)

    def _fan_out(self, chunk: Output) -> None:
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            # Once the command is being ended, a slow reader loses what it has no room for, at no wait.
            while not subscription.offer(chunk, 0 if self.abort is not None else POLL_SECONDS):
                self._check_deadline()
                if self.abort is not None:
                    break

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            self.kill(DEADLINE_ABORT)

    # -- stdin -----------------------------------------------------------------------------------------------

    def write_stdin(self, data: bytes) -> None:
        """SendInput. Raises ValueError when the command has no stdin (started with stdin=false, or closed)
        and OSError when writing fails (the command is gone). Waits while the pipe is full, as envd does,
        but never with the lock held: closing stdin (or the command ending) ends the wait."""
        remaining = memoryview(data)
        while remaining:
            with self._stdin_lock:
                pipe = self._popen.stdin
                if pipe is None or pipe.closed:
                    raise ValueError("stdin not enabled or closed")
                fd = pipe.fileno()
                try:
                    written = os.write(fd, remaining)
                except BlockingIOError:
                    written = 0
            remaining = remaining[written:]
            if remaining:
                with contextlib.suppress(OSError, ValueError):
                    select.select([], [fd], [], POLL_SECONDS)

    def close_stdin(self) -> None:
        """CloseStdin: EOF for the command; closing a closed (or absent) stdin is fine, as in envd."""
        with self._stdin_lock:
            pipe = self._popen.stdin
            if pipe is not None and not pipe.closed:
                pipe.close()

    def _close_stdin_quietly(self) -> None:
        with contextlib.suppress(OSError):
            self.close_stdin()

    # -- signals and exit ------------------------------------------------------------------------------------

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
            self._close_stdin_quietly()
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
