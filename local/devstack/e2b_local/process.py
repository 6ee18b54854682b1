"""A command running "inside" a local sandbox: a host subprocess in its own process group.

The group matters: `bash -l -c "sleep 5"` forks, and killing only bash would leave the child holding the
output pipes, so the stream would never end. Output is read by two threads into one queue so the HTTP
handler can stream chunks as they arrive and still notice deadlines and aborts while the process is quiet.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

READ_CHUNK = 32 * 1024  # envd reads output in 32 KiB chunks as well


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
            start_new_session=True,
            close_fds=True,
        )
        self.pid = self._popen.pid
        self._open_pipes = 2
        self._pipes_lock = threading.Lock()
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
            with self._pipes_lock:
                self._open_pipes -= 1
                if self._open_pipes == 0:
                    self.events.put(None)

    def send_signal(self, signum: int) -> None:
        """Signal the whole process group; a group that is already gone is not an error."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def kill(self, abort: Abort | None = None) -> None:
        if abort is not None and self.abort is None:
            self.abort = abort
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        return self._popen.wait(timeout)

    def poll(self) -> int | None:
        return self._popen.poll()


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
