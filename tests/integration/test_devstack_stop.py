"""`make dev` always stops (issue 16): SIGTERM or Ctrl-C ends the whole stack within 5 s whatever is still
open (also when one of its services has already died), and a second Ctrl-C ends it at once.

The hard case, as a user gets there with the real e2b SDK: a `commands.run` stream that never ends, two
background commands whose children wait for ever, a paused sandbox, and half-sent requests to the gateway and
to the local E2B API, all still open when the signal arrives. After it: the dev stack exited in time with
its status, nothing of its session or process group is left, no sandbox process is left anywhere, and every
port it used can be listened on again.

Stopping races with everything still running, so the case runs twice in `make test` and twenty times in
`make soak` (`pytest -m soak`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from e2b import Sandbox

from plugins.services import can_listen, launch_devstack, sandbox_processes, stack_processes

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")

STOP_LIMIT = 5.0  # seconds from the signal to the exit, in every state
FORCED_LIMIT = 1.0  # seconds from a second signal to the exit
ROUNDS = 2
SOAK_ROUNDS = 20
FOREVER = "while true; do echo x; sleep 0.1; done"
CHILDREN_FOREVER = "sleep 1000 & sleep 1000 & wait"


@dataclass
class HardCase:
    """A running dev stack with everything of the hard case open."""

    process: subprocess.Popen[bytes]
    endpoints: dict[str, Any]
    sandbox_ids: list[str] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)
    stream_errors: list[BaseException] = field(default_factory=list)

    @property
    def ports(self) -> dict[str, int]:
        urls = {name: self.endpoints[f"{name}_url"] for name in ("api", "redis", "e2b_api")}
        urls["moto"] = self.endpoints["aws_endpoint_url"]
        return {name: int(urlsplit(url).port or 0) for name, url in urls.items()}

    def signal(self, signum: int) -> float:
        os.kill(self.process.pid, signum)
        return time.monotonic()

    def wait(self, limit: float, since: float) -> tuple[int, float]:
        """The exit status and the seconds from `since` to the exit; fails the test past `limit`."""
        try:
            code = self.process.wait(timeout=max(0.0, since + limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"the dev stack was still running {limit}s after the signal:\n{self.log_tail()}")
        return code, time.monotonic() - since

    def assert_nothing_left(self) -> None:
        """No process of the stack's session or group, no sandbox process anywhere, every port free."""
        eventually(lambda: stack_processes(self.process.pid) == [], "processes of the stack's session")
        eventually(lambda: sandbox_processes(*self.sandbox_ids) == [], "sandbox processes")
        for name, pid in self.endpoints["pids"].items():
            assert not _alive(pid), f"{name} (pid {pid}) is still alive"
        for name, port in self.ports.items():
            assert can_listen(port), f"the {name} port {port} is still taken"

    def log_tail(self) -> str:
        return Path(self.endpoints["log"]).read_text(errors="replace")[-4000:]


@pytest.fixture
def hard_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HardCase]:
    process, endpoints = launch_devstack(tmp_path, "--no-seed", "--quiet")
    case = HardCase(process, endpoints)
    try:
        _open_everything(case, monkeypatch)
        yield case
    finally:
        for sock in case.sockets:
            sock.close()
        if process.poll() is None:  # a failed test must not leave the stack behind
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for pid in [*sandbox_processes(*case.sandbox_ids), *endpoints["pids"].values()]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _open_everything(case: HardCase, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoints = case.endpoints
    monkeypatch.setenv("E2B_API_URL", endpoints["e2b_api_url"])
    monkeypatch.setenv("E2B_SANDBOX_URL", endpoints["e2b_sandbox_url"])
    monkeypatch.setenv("E2B_API_KEY", endpoints["e2b_api_key"])
    monkeypatch.delenv("E2B_DEBUG", raising=False)  # debug mode would skip create and kill altogether
    busy, paused = Sandbox.create(timeout=300), Sandbox.create(timeout=300)
    case.sandbox_ids += [busy.sandbox_id, paused.sandbox_id]
    lines: list[str] = []

    def stream() -> None:
        try:
            busy.commands.run(FOREVER, on_stdout=lines.append, timeout=0)
        except Exception as error:  # the stack went away under it: expected
            case.stream_errors.append(error)

    threading.Thread(target=stream, name="never-ending-stream", daemon=True).start()
    for _ in range(2):
        busy.commands.run(CHILDREN_FOREVER, background=True, timeout=0)
    paused.pause()
    for url in (endpoints["api_url"], endpoints["e2b_api_url"]):
        case.sockets.append(_half_sent_request(url))
    eventually(lambda: bool(lines), "output of the never-ending stream")
    # The stream's shell and its sleep, and two shells with two sleeps each.
    eventually(lambda: len(sandbox_processes(busy.sandbox_id)) >= 7, "the sandbox's processes")


def _half_sent_request(url: str) -> socket.socket:
    """A request whose headers promise 100 bytes of body, of which only 10 arrive."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=5)
    sock.sendall(
        f"POST {parts.path.rstrip('/')}/v1/sessions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Content-Type: application/json\r\nx-api-key: half\r\nX-API-KEY: half\r\n"
        "Content-Length: 100\r\n\r\n0123456789".encode()
    )
    return sock


def eventually(condition: Callable[[], bool], what: str, within: float = 2.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not as expected within {within}s"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


# -- the cases ---------------------------------------------------------------------------------------------


def a_signal_stops_everything(case: HardCase, signum: int = signal.SIGTERM) -> float:
    """One SIGTERM or SIGINT: the graceful stop, exit 0 within STOP_LIMIT, nothing left. Seconds it took."""
    code, took = case.wait(STOP_LIMIT, since=case.signal(signum))

    assert code == 0, f"exit status {code}:\n{case.log_tail()}"
    case.assert_nothing_left()
    assert case.stream_errors, "the never-ending stream should have ended with an error"
    return took


@pytest.mark.parametrize("round", range(1, ROUNDS + 1))
def test_sigterm_stops_everything_within_5s(hard_case: HardCase, round: int) -> None:
    took = a_signal_stops_everything(hard_case)
    print(f"round {round}: stopped in {took:.2f}s")


def test_sigterm_stops_everything_with_redis_sigstopped(hard_case: HardCase) -> None:
    os.kill(hard_case.endpoints["pids"]["redis"], signal.SIGSTOP)  # "Redis hangs", as a fault test makes it

    took = a_signal_stops_everything(hard_case)
    print(f"stopped with redis SIGSTOPped in {took:.2f}s")


def test_a_single_sigint_stops_everything_within_5s(hard_case: HardCase) -> None:
    took = a_signal_stops_everything(hard_case, signal.SIGINT)  # Ctrl-C once: the same graceful stop, exit 0
    print(f"stopped by one SIGINT in {took:.2f}s")


@pytest.mark.parametrize("service", ["moto", "redis", "e2b"])
def test_sigterm_stops_everything_with_a_service_already_dead(hard_case: HardCase, service: str) -> None:
    endpoints = json.loads((Path(hard_case.endpoints["state_dir"]) / "endpoints.json").read_text())
    pid = endpoints["pids"][service]
    os.kill(pid, signal.SIGKILL)  # kill -9, as a crash or the OOM killer would
    eventually(lambda: not _alive(pid), f"{service} (pid {pid}) dead")

    took = a_signal_stops_everything(hard_case)
    print(f"stopped with {service} already dead in {took:.2f}s")


def test_a_second_sigint_exits_at_once(hard_case: HardCase) -> None:
    hard_case.signal(signal.SIGINT)
    time.sleep(0.1)  # the stop is under way (it takes about a second)

    code, took = hard_case.wait(FORCED_LIMIT, since=hard_case.signal(signal.SIGINT))

    assert code == 128 + signal.SIGINT, f"exit status {code}:\n{hard_case.log_tail()}"
    hard_case.assert_nothing_left()
    print(f"forced exit {took:.2f}s after the second SIGINT")


@pytest.mark.soak
@pytest.mark.parametrize("round", range(1, SOAK_ROUNDS + 1))
def test_soak_sigterm_stops_everything_within_5s(hard_case: HardCase, round: int) -> None:
    took = a_signal_stops_everything(hard_case)
    print(f"soak round {round}: stopped in {took:.2f}s")
