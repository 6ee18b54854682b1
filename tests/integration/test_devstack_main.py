"""`make dev` as a user runs it: `python -m devstack` becomes ready, writes endpoints.json and env.json,
serves the HTTP API with the seeded demo keys, and SIGTERM stops it and every process it started."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.template import Template
from plugins.services import launch_devstack


def http(method: str, url: str, key: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_endpoints_describe_the_running_stack(devstack: dict[str, Any]) -> None:
    for name in ("api_url", "aws_endpoint_url", "region", "redis_url", "e2b_api_url", "e2b_sandbox_url"):
        assert devstack[name], name
    assert devstack["api_url"].startswith("http://127.0.0.1:")
    assert len(devstack["projects"]) == 2
    assert all(project["api_key"].startswith("ssk_") for project in devstack["projects"])
    assert {"SessionsTable", "ProjectsTable", "ApiKeysTable"} <= set(devstack["tables"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads child processes from /proc")
def test_endpoints_name_the_pid_of_the_stack_and_of_each_service(devstack: dict[str, Any]) -> None:
    pids = devstack["pids"]

    assert set(pids) == {"devstack", "moto", "redis", "e2b"}
    assert pids["devstack"] == devstack["pid"]
    assert {pids["moto"], pids["redis"], pids["e2b"]} <= set(_children(pids["devstack"]))
    assert "devstack.e2b_local" in Path(f"/proc/{pids['e2b']}/cmdline").read_text()


def test_env_json_covers_every_function_and_its_template_variables(
    devstack: dict[str, Any], template: Template
) -> None:
    env_vars = json.loads((Path(devstack["state_dir"]) / "env.json").read_text())
    assert set(env_vars) == set(template.functions)
    for logical_id, function in template.functions.items():
        env = env_vars[logical_id]
        assert set(function.variables) <= set(env), logical_id
        assert env["AWS_ENDPOINT_URL"] == devstack["aws_endpoint_url"]
        if "REDIS_PORT" in env:
            assert devstack["redis_url"].endswith(f":{env['REDIS_PORT']}/0") and env["REDIS_TLS"] == "false"


def test_the_api_answers_like_api_gateway(devstack: dict[str, Any]) -> None:
    api = devstack["api_url"]
    assert http("GET", f"{api}/v1/sessions") == (401, {"message": "Unauthorized"})
    assert http("GET", f"{api}/v1/nothing-here", key="x") == (404, {"message": "Not Found"})


def test_the_demo_key_creates_and_reads_a_session(devstack: dict[str, Any]) -> None:
    api, key = devstack["api_url"], devstack["projects"][0]["api_key"]
    status, created = http(
        "POST", f"{api}/v1/sessions", key, {"user_id": "u1", "metadata": {"via": "devstack"}}
    )
    assert status == 201, created
    assert http("GET", f"{api}/v1/sessions/{created['id']}", key) == (200, created)


def test_a_request_whose_body_never_arrives_whole_invokes_nothing(devstack: dict[str, Any]) -> None:
    api, key = urlsplit(devstack["api_url"]), devstack["projects"][0]["api_key"]
    body = b'{"user_id": "cut-short"}'  # valid JSON, but 100 bytes were promised
    with socket.create_connection((api.hostname or "127.0.0.1", api.port or 80), timeout=10) as sock:
        sock.sendall(
            f"POST {api.path}/v1/sessions HTTP/1.1\r\nHost: {api.netloc}\r\nx-api-key: {key}\r\n"
            "content-type: application/json\r\ncontent-length: 100\r\n\r\n".encode()
            + body
        )
        sock.shutdown(socket.SHUT_WR)

        assert sock.recv(1024) == b""  # closed without an answer

    status, listed = http("GET", f"{devstack['api_url']}/v1/sessions?limit=100", key)
    assert status == 200
    assert "cut-short" not in json.dumps(listed)


@pytest.mark.parametrize(
    ("override", "message"),
    [("NoSuchParameter=1", "the template has no parameter NoSuchParameter"), ("Stage", "takes NAME=VALUE")],
)
def test_a_wrong_parameter_override_stops_before_anything_starts(
    tmp_path: Path, override: str, message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "devstack", "--port", "0", "--state-dir", str(tmp_path),
         "--parameter-overrides", override],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not (tmp_path / "endpoints.json").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads child processes from /proc")
def test_sigterm_stops_every_process_the_stack_started(tmp_path: Path) -> None:
    process, endpoints = launch_devstack(tmp_path, "--no-seed", "--quiet")
    try:
        http("GET", f"{endpoints['api_url']}/v1/sessions", key="starts-an-authorizer-worker")
        children = _children(process.pid)
        assert len(children) >= 4  # moto server, redis-server, the local E2B API and the authorizer's worker
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
        assert not (tmp_path / "endpoints.json").exists()
        assert [pid for pid in children if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)] == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
