"""The local E2B API as the real `e2b` SDK sees it: lifecycle, listing, faults, latency, outages, commands and
the control API. (Its sandbox filesystem is in test_e2b_local_files.py.)"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from threading import Thread, Timer
from typing import Any

import httpx
import pytest
from e2b import (
    CommandExitException,
    InvalidArgumentException,
    Sandbox,
    SandboxException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxQuery,
    SandboxState,
    TimeoutException,
)

from devstack.e2b_local import LocalE2B
from devstack.e2b_local.state import PRUNE_SECONDS
from devstack.services import E2BServer
from plugins.services import sandbox_processes


def listed(query: SandboxQuery | None = None, limit: int | None = None) -> list[str]:
    """Every page of Sandbox.list, as the SDK's paginator walks it."""
    paginator = Sandbox.list(query=query, limit=limit)
    ids: list[str] = []
    while paginator.has_next:
        ids.extend(info.sandbox_id for info in paginator.next_items())
    return ids


def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def state_of(api: LocalE2B, sandbox_id: str) -> str | None:
    return next((s["state"] for s in api.sandboxes() if s["sandbox_id"] == sandbox_id), None)


# -- control plane ---------------------------------------------------------------------------------------


def test_create_with_metadata_is_listed_by_exactly_that_metadata(e2b_env: LocalE2B) -> None:
    tricky = {"session_id": "ses_1", "note": "a b&c=d/é%"}
    mine = Sandbox.create(metadata=tricky, envs={"GREETING": "hi"})
    other = Sandbox.create(metadata={"session_id": "ses_2", "note": "x"})

    assert listed(SandboxQuery(metadata=tricky)) == [mine.sandbox_id]
    assert listed(SandboxQuery(metadata={"session_id": "ses_2"})) == [other.sandbox_id]
    assert listed(SandboxQuery(metadata={"session_id": "ses_3"})) == []
    assert sorted(listed()) == sorted([mine.sandbox_id, other.sandbox_id])
    [snapshot] = e2b_env.sandboxes(metadata={"session_id": "ses_1"})
    assert snapshot["metadata"] == tricky
    assert snapshot["template_id"] == "base"
    assert snapshot["env_vars"] == {"GREETING": "hi"}


def test_listing_250_sandboxes_pages_by_100_and_returns_each_once(e2b_env: LocalE2B) -> None:
    created = {Sandbox.create(metadata={"batch": "big"}).sandbox_id for _ in range(250)}

    ids = listed(SandboxQuery(metadata={"batch": "big"}), limit=100)

    assert len(ids) == 250
    assert set(ids) == created
    assert [entry for entry in e2b_env.request_log if entry[1] == "/v2/sandboxes" and entry[0] == "GET"] == [
        ("GET", "/v2/sandboxes", 200)
    ] * 3


def test_page_limit_caps_pages_and_oversized_limits_are_refused(e2b_env: LocalE2B) -> None:
    created = [Sandbox.create().sandbox_id for _ in range(5)]
    e2b_env.set_page_limit(2)

    assert listed() == created  # oldest first, 3 pages
    assert (
        sum(1 for method, path, _ in e2b_env.request_log if (method, path) == ("GET", "/v2/sandboxes")) == 3
    )
    with pytest.raises(SandboxException, match="400"):
        Sandbox.list(limit=101).next_items()


def test_state_filters_select_running_paused_or_both(e2b_env: LocalE2B) -> None:
    running = Sandbox.create().sandbox_id
    paused = Sandbox.create().sandbox_id
    Sandbox.pause(paused)

    assert listed(SandboxQuery(state=[SandboxState.RUNNING])) == [running]
    assert listed(SandboxQuery(state=[SandboxState.PAUSED])) == [paused]
    assert listed(SandboxQuery(state=[SandboxState.RUNNING, SandboxState.PAUSED])) == [running, paused]
    assert listed() == [running, paused]


def test_pause_lists_as_paused_and_pausing_again_returns_false(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create()

    assert sandbox.pause() is True
    assert Sandbox.get_info(sandbox.sandbox_id).state == SandboxState.PAUSED
    assert sandbox.pause() is False
    assert e2b_env.request_log[-1] == ("POST", f"/sandboxes/{sandbox.sandbox_id}/pause", 409)
    with pytest.raises(SandboxNotFoundException):
        Sandbox.pause("absent0000000000000")


def test_connect_resumes_a_paused_sandbox_and_keeps_a_running_one(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create()
    sandbox.pause()

    resumed = Sandbox.connect(sandbox.sandbox_id, timeout=60)

    assert state_of(e2b_env, sandbox.sandbox_id) == "running"
    assert resumed.commands.run("echo back").stdout == "back\n"
    Sandbox.connect(sandbox.sandbox_id)
    connects = [status for method, path, status in e2b_env.request_log if path.endswith("/connect")]
    assert connects == [201, 200]
    with pytest.raises(SandboxNotFoundException):
        Sandbox.connect("absent0000000000000")


def test_kill_removes_running_and_paused_sandboxes_and_reports_absent_ones(e2b_env: LocalE2B) -> None:
    running = Sandbox.create()
    paused = Sandbox.create()
    paused.pause()
    workdir = Path(e2b_env.sandboxes(state="paused")[0]["workdir"])

    assert running.kill() is True
    assert Sandbox.kill(paused.sandbox_id) is True

    assert e2b_env.sandboxes() == []
    assert listed() == []
    assert not workdir.exists()
    assert Sandbox.kill(running.sandbox_id) is False


def test_set_timeout_moves_the_end_time_either_way(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create(timeout=600)

    sandbox.set_timeout(30)

    remaining = Sandbox.get_info(sandbox.sandbox_id).end_at - datetime.now(UTC)
    assert 25 < remaining.total_seconds() <= 30
    assert e2b_env.request_log[-2] == ("POST", f"/sandboxes/{sandbox.sandbox_id}/timeout", 204)


def test_timeout_kills_a_sandbox_without_auto_pause(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create(timeout=1)

    eventually(lambda: state_of(e2b_env, sandbox.sandbox_id) is None)
    assert Sandbox.kill(sandbox.sandbox_id) is False


def test_timeout_pauses_a_sandbox_created_with_on_timeout_pause(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create(timeout=1, lifecycle={"on_timeout": "pause"})
    assert Sandbox.get_info(sandbox.sandbox_id).lifecycle == {"on_timeout": "pause", "auto_resume": False}

    eventually(lambda: state_of(e2b_env, sandbox.sandbox_id) == "paused")
    assert listed(SandboxQuery(state=[SandboxState.PAUSED])) == [sandbox.sandbox_id]


def test_expire_applies_the_timeout_action_at_once(e2b_env: LocalE2B) -> None:
    pausing = Sandbox.create(lifecycle={"on_timeout": "pause"})
    dying = Sandbox.create()

    e2b_env.expire(pausing.sandbox_id)
    e2b_env.expire(dying.sandbox_id)

    assert [(s["sandbox_id"], s["state"]) for s in e2b_env.sandboxes()] == [(pausing.sandbox_id, "paused")]


def test_control_plane_requires_an_api_key(e2b_env: LocalE2B) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(f"{e2b_env.url}/v2/sandboxes", timeout=5)

    assert raised.value.code == 401
    assert json.loads(raised.value.read())["code"] == 401


def test_legacy_list_shows_running_sandboxes_only(e2b_env: LocalE2B) -> None:
    running = Sandbox.create().sandbox_id
    Sandbox.create().pause()
    request = urllib.request.Request(f"{e2b_env.url}/sandboxes", headers={"X-API-KEY": e2b_env.api_key})

    with urllib.request.urlopen(request, timeout=5) as response:
        assert [item["sandboxID"] for item in json.loads(response.read())] == [running]


# -- faults and outages ----------------------------------------------------------------------------------


def test_injected_500_fails_one_kill_and_the_next_call_works(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create()
    e2b_env.inject("DELETE", "/sandboxes/", 500)

    with pytest.raises(SandboxException, match="500"):
        Sandbox.kill(sandbox.sandbox_id)
    assert state_of(e2b_env, sandbox.sandbox_id) == "running"  # the fault struck before any effect

    assert Sandbox.kill(sandbox.sandbox_id) is True
    kills = [status for method, _, status in e2b_env.request_log if method == "DELETE"]
    assert kills == [500, 204]


def test_injected_429_is_retried_by_the_sdk_after_retry_after(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create()
    e2b_env.inject("GET", "/v2/sandboxes", 429, retry_after=1)

    started = time.monotonic()
    assert listed() == [sandbox.sandbox_id]

    assert time.monotonic() - started >= 0.9
    lists = [
        status for method, path, status in e2b_env.request_log if path == "/v2/sandboxes" and method == "GET"
    ]
    assert lists == [429, 200]


def test_injected_latency_delays_every_matching_request_before_its_effect(e2b_env: LocalE2B) -> None:
    first, second = Sandbox.create(), Sandbox.create()
    e2b_env.inject_latency("DELETE", "/sandboxes/", 0.2)

    for sandbox in (first, second):  # times=None: every matching request until reset
        started = time.monotonic()
        assert Sandbox.kill(sandbox.sandbox_id) is True
        assert time.monotonic() - started >= 0.2

    e2b_env.reset_faults()
    started = time.monotonic()
    assert Sandbox.kill(first.sandbox_id) is False
    assert time.monotonic() - started < 0.2


def test_latency_for_two_requests_delays_only_those_two(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create()
    e2b_env.inject_latency("GET", f"/sandboxes/{sandbox.sandbox_id}", 0.5, times=2)

    durations = []
    for _ in range(3):
        started = time.monotonic()
        Sandbox.get_info(sandbox.sandbox_id)
        durations.append(time.monotonic() - started)

    assert durations[0] >= 0.5 and durations[1] >= 0.5
    assert durations[2] < 0.4


def test_latency_and_a_fault_together_delay_then_fail_with_no_effect(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create()
    e2b_env.inject_latency("*", "/sandboxes/", 0.2, times=1)
    e2b_env.inject("DELETE", "/sandboxes/", 500)

    started = time.monotonic()
    with pytest.raises(SandboxException, match="500"):
        Sandbox.kill(sandbox.sandbox_id)

    assert time.monotonic() - started >= 0.2
    assert state_of(e2b_env, sandbox.sandbox_id) == "running"


def test_a_request_held_by_latency_when_the_server_stops_has_no_effect(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create()
    e2b_env.inject_latency("DELETE", "/sandboxes/", 10)
    outcome: list[BaseException] = []

    def kill() -> None:
        request = urllib.request.Request(
            f"{e2b_env.url}/sandboxes/{sandbox.sandbox_id}", method="DELETE", headers={"X-API-KEY": "k"}
        )
        try:
            urllib.request.urlopen(request, timeout=5)
        except Exception as error:
            outcome.append(error)

    killing = Thread(target=kill)
    killing.start()
    time.sleep(0.2)
    e2b_env.stop()
    killing.join(timeout=5)

    assert outcome, "the held request should have been cut"
    e2b_env.restart()
    assert state_of(e2b_env, sandbox.sandbox_id) == "running"


def test_stopped_server_is_unreachable_and_restart_keeps_state(e2b_env: LocalE2B) -> None:
    sandbox = Sandbox.create()
    url = e2b_env.url

    e2b_env.stop()
    with pytest.raises(httpx.ConnectError):
        Sandbox.kill(sandbox.sandbox_id)

    e2b_env.restart()
    assert e2b_env.url == url
    assert sandbox.commands.run("echo still here").stdout == "still here\n"
    assert Sandbox.kill(sandbox.sandbox_id) is True


# -- commands (envd) -------------------------------------------------------------------------------------


@pytest.fixture
def sandbox(e2b_env: LocalE2B) -> Sandbox:
    return Sandbox.create(envs={"FROM_CREATE": "create"})


def test_run_returns_stdout_and_stderr(sandbox: Sandbox) -> None:
    result = sandbox.commands.run("echo hello; echo oops >&2")

    assert (result.stdout, result.stderr, result.exit_code) == ("hello\n", "oops\n", 0)


def test_non_zero_exit_raises_with_the_exit_code(sandbox: Sandbox) -> None:
    with pytest.raises(CommandExitException) as raised:
        sandbox.commands.run("echo partial; echo broken >&2; exit 3")

    assert raised.value.exit_code == 3
    assert (raised.value.stdout, raised.value.stderr) == ("partial\n", "broken\n")


def test_sandbox_and_command_env_vars_reach_the_command(sandbox: Sandbox) -> None:
    result = sandbox.commands.run('echo "$FROM_CREATE $FROM_RUN $E2B_SANDBOX"', envs={"FROM_RUN": "run"})

    assert result.stdout == "create run true\n"


def test_cwd_is_honoured_inside_the_sandbox_only(sandbox: Sandbox) -> None:
    home = sandbox.commands.run("pwd").stdout.strip()
    sandbox.commands.run("mkdir -p work/sub")

    assert sandbox.commands.run("pwd", cwd="/home/user/work/sub").stdout.strip() == f"{home}/work/sub"
    assert sandbox.commands.run("pwd", cwd="work").stdout.strip() == f"{home}/work"
    with pytest.raises(InvalidArgumentException):
        sandbox.commands.run("pwd", cwd="/etc")
    with pytest.raises(InvalidArgumentException):
        sandbox.commands.run("pwd", cwd="missing")


def test_output_is_streamed_as_it_is_produced(sandbox: Sandbox) -> None:
    arrivals: list[tuple[str, float]] = []
    sandbox.commands.run(
        "echo first; sleep 0.6; echo second", on_stdout=lambda line: arrivals.append((line, time.monotonic()))
    )

    assert [line for line, _ in arrivals] == ["first\n", "second\n"]
    assert arrivals[1][1] - arrivals[0][1] > 0.4  # the first line arrived before the command ended


def test_command_timeout_raises_and_kills_the_command(e2b_env: LocalE2B, sandbox: Sandbox) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutException):
        sandbox.commands.run("sleep 1; touch finished", timeout=0.3)

    eventually(lambda: e2b_env.sandboxes()[0]["processes"] == [])
    time.sleep(max(0.0, started + 1.5 - time.monotonic()))
    assert not (Path(e2b_env.sandboxes()[0]["home"]) / "finished").exists()


def test_a_disconnected_command_keeps_running_like_envd(e2b_env: LocalE2B, sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("sleep 0.3; touch finished", background=True, timeout=0)

    handle.disconnect()

    home = Path(e2b_env.sandboxes()[0]["home"])
    eventually(lambda: (home / "finished").exists())


def test_background_commands_are_listed_and_killed_by_signal(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("sleep 30", background=True)
    assert [process.pid for process in sandbox.commands.list()] == [handle.pid]

    assert handle.kill() is True

    with pytest.raises(CommandExitException) as raised:
        handle.wait()
    assert raised.value.exit_code == -1  # killed by a signal, as envd reports it
    eventually(lambda: sandbox.commands.list() == [])
    assert sandbox.commands.kill(handle.pid) is False


def test_a_paused_sandbox_cannot_run_commands(e2b_env: LocalE2B, sandbox: Sandbox) -> None:
    sandbox.pause()

    with pytest.raises(SandboxException, match="paused"):
        sandbox.commands.run("echo hi")
    assert ("POST", "/process.Process/Start", 409) in e2b_env.request_log


def test_pausing_or_killing_ends_a_running_command(sandbox: Sandbox) -> None:
    handle = sandbox.commands.run("sleep 10", background=True)
    Timer(0.2, lambda: Sandbox.pause(sandbox.sandbox_id)).start()
    with pytest.raises(TimeoutException, match="paused"):
        handle.wait()

    sandbox.connect()
    handle = sandbox.commands.run("sleep 10", background=True)
    Timer(0.2, lambda: Sandbox.kill(sandbox.sandbox_id)).start()
    with pytest.raises(SandboxNotRunningException):
        handle.wait()
    with pytest.raises(SandboxNotRunningException):
        sandbox.commands.run("echo gone")


# -- process groups and shutdown ------------------------------------------------------------------------

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")


@linux_only
@pytest.mark.parametrize("end", ["kill", "pause", "reset"])
def test_what_a_finished_command_left_running_ends_with_its_sandbox(
    e2b_env: LocalE2B, sandbox: Sandbox, end: str
) -> None:
    sandbox.commands.run("sleep 60 >/dev/null 2>&1 &")  # returns at once, like starting a server
    time.sleep(0.3)
    assert len(sandbox_processes(sandbox.sandbox_id)) == 1  # it keeps running while the sandbox does

    {"kill": sandbox.kill, "pause": sandbox.pause, "reset": e2b_env.reset}[end]()

    eventually(lambda: sandbox_processes(sandbox.sandbox_id) == [], within=2)


@linux_only
def test_finished_commands_are_reaped_once_their_groups_are_empty(sandbox: Sandbox) -> None:
    pids = [int(sandbox.commands.run("echo $$").stdout) for _ in range(3)]

    def zombie_child(pid: int) -> bool:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return False
        return fields[0] == "Z" and int(fields[1]) == os.getpid()

    eventually(lambda: not any(zombie_child(pid) for pid in pids), within=PRUNE_SECONDS + 2)


@linux_only
def test_each_command_leads_a_process_group_in_the_servers_session(sandbox: Sandbox) -> None:
    # /proc/PID/stat fields 5 and 6: process group and session (the shell's own, as `$$`)
    output = sandbox.commands.run("echo $$ $(cut -d' ' -f5,6 /proc/$$/stat)").stdout
    pid, pgid, sid = map(int, output.split())

    assert pgid == pid  # killed as a group, children included
    assert sid == os.getsid(0)  # the in-process server's session: a supervisor can sweep it


@linux_only
def test_close_returns_at_once_and_kills_everything_with_streams_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = LocalE2B(reaper_interval=0.05).start()  # a server of its own: close() is for good
    monkeypatch.setenv("E2B_API_KEY", api.api_key)
    monkeypatch.setenv("E2B_API_URL", api.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", api.url)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    sandbox = Sandbox.create()
    ended: list[BaseException] = []

    def stream() -> None:
        try:
            forever = "while true; do echo x; sleep 0.05; done"
            sandbox.commands.run(forever, on_stdout=lambda _: None, timeout=0)
        except Exception as error:
            ended.append(error)

    streaming = Thread(target=stream, daemon=True)
    streaming.start()
    sandbox.commands.run("sleep 60 & sleep 60 & wait", background=True, timeout=0)
    eventually(lambda: len(sandbox_processes(sandbox.sandbox_id)) >= 4)

    started = time.monotonic()
    api.close()

    assert time.monotonic() - started < 1.0
    eventually(lambda: sandbox_processes(sandbox.sandbox_id) == [], within=2)
    streaming.join(timeout=10)
    assert ended, "the stream should have ended with an error"


# -- the control API of a server running as a process of its own --------------------------------------


def control(server: E2BServer, method: str, path: str, body: object = None, key: str | None = None) -> Any:
    """(status, JSON body or None) of a /_local/ request."""
    request = urllib.request.Request(
        f"{server.url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-KEY": key or server.api_key, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_the_control_api_sets_faults_and_latency_in_a_server_process(monkeypatch: pytest.MonkeyPatch) -> None:
    with E2BServer() as server:
        monkeypatch.setenv("E2B_API_KEY", server.api_key)
        monkeypatch.setenv("E2B_API_URL", server.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
        monkeypatch.delenv("E2B_DEBUG", raising=False)
        sandbox = Sandbox.create(metadata={"session_id": "s1"})
        assert control(server, "GET", "/_local/sandboxes", key="e2b_someone_else")[0] == 401

        status, listed = control(server, "GET", "/_local/sandboxes")
        assert status == 200
        assert [(s["sandbox_id"], s["state"], s["metadata"]) for s in listed] == [
            (sandbox.sandbox_id, "running", {"session_id": "s1"})
        ]

        fault = {
            "method": "DELETE",
            "path_prefix": "/sandboxes/",
            "status": 500,
            "latency_s": 0.3,
            "times": 1,
        }
        assert control(server, "POST", "/_local/faults", fault) == (204, None)
        started = time.monotonic()
        with pytest.raises(SandboxException, match="500"):
            Sandbox.kill(sandbox.sandbox_id)
        assert time.monotonic() - started >= 0.3
        assert [s["sandbox_id"] for s in control(server, "GET", "/_local/sandboxes?state=running")[1]] == [
            sandbox.sandbox_id
        ]

        latency = {"method": "GET", "path_prefix": "/sandboxes/", "latency_s": 0.3}
        assert control(server, "POST", "/_local/faults", latency) == (204, None)
        started = time.monotonic()
        Sandbox.get_info(sandbox.sandbox_id)
        assert time.monotonic() - started >= 0.3
        assert control(server, "POST", "/_local/reset-faults") == (204, None)
        started = time.monotonic()
        Sandbox.get_info(sandbox.sandbox_id)
        assert time.monotonic() - started < 0.3

        assert control(server, "POST", "/_local/faults", {"method": "GET"})[0] == 400
        assert control(server, "POST", "/_local/faults", {"status": 200})[0] == 400
        assert control(server, "GET", "/_local/nothing")[0] == 404
