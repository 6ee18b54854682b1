"""Pytest fixtures for the local services and the template's functions (loaded as a plugin from
tests/conftest.py). Every service is a real process on a free loopback port, started once per session and
stopped at its end; nothing is assumed to be running.

- `moto_server`, `redis_server` (+ `redis_down`), `aws_env`: the services, and the SDK pointed at them.
- `template`, `local_resources`, `local_endpoints`, `invoker`: template.yaml provisioned in the session's
  moto server, and its functions callable in-process with their own environment; `websocket_gateway`, its
  WebSocket API (the functions' management endpoint).
- `devstack`: the whole dev stack (`python -m devstack`) as a subprocess, for e2e tests over HTTP
  (`launch_devstack` starts another one), and what tests check after stopping it: `sandbox_processes`,
  `stack_processes`, `can_listen`. In smoke mode (`make smoke API=... KEY=...`: SMOKE_API_URL and
  SMOKE_API_KEY, optionally SMOKE_API_KEY2 for a second project) it starts nothing and points at that
  deployed API; tests that need the dev stack's own parts (the local E2B API) skip with `local_only`.
- `sample_app`: a tiny SAM app of its own, for testing the dev stack machinery itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.functions import InProcessInvoker, LocalEndpoints, local_overrides
from devstack.provision import provision
from devstack.services import MotoServer, RedisServer, live_processes
from devstack.template import LocalResources, Template
from devstack.websocket import WebSocketGateway
from session_service.services.auth import MAX_RATE_LIMIT_PER_MINUTE
from session_service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
DEVSTACK_READY_TIMEOUT = 60.0
DEVSTACK_STOP_TIMEOUT = 5.0  # what `make dev` promises after SIGTERM or Ctrl-C


# --- services ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_down(
    redis_server: RedisServer,
) -> Iterator[Callable[[], contextlib.AbstractContextManager[RedisServer]]]:
    """`with redis_down(): ...` runs the block with redis-server stopped (connections are refused), then
    starts it again on the same port. The server is back up after the test even if the block raised."""

    @contextlib.contextmanager
    def down() -> Iterator[RedisServer]:
        redis_server.stop()
        try:
            yield redis_server
        finally:
            redis_server.restart()
            # As in the cloud, functions that saw the outage try Redis again once their breaker has passed.
            time.sleep(Settings().redis_breaker_seconds)

    yield down
    if not redis_server.running:
        redis_server.restart()


@pytest.fixture(scope="session")
def aws_env(moto_server: MotoServer) -> Iterator[dict[str, str]]:
    """The AWS SDK in the test process pointed at moto with dummy credentials, for the whole session;
    the developer's profile and config files are hidden so that no test can reach a real account."""
    env = {
        "AWS_ENDPOINT_URL": moto_server.url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


# --- the template's functions -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def template() -> Template:
    return Template.load(TEMPLATE)


@pytest.fixture(scope="session")
def local_endpoints(
    moto_server: MotoServer, local_e2b: Any, websocket_gateway: WebSocketGateway
) -> LocalEndpoints:
    return LocalEndpoints(
        aws_endpoint_url=moto_server.url,
        region=REGION,
        e2b_api_url=local_e2b.url,
        e2b_sandbox_url=local_e2b.url,
        e2b_api_key=local_e2b.api_key,
        websocket_management_url=websocket_gateway.management_url,
    )


@pytest.fixture(scope="session")
def websocket_gateway(template: Template, local_resources: LocalResources) -> Iterator[WebSocketGateway]:
    """The template's WebSocket API, as the dev stack serves it: clients connect to `.url` (its routes run
    through `invoker`), and the functions' WEBSOCKET_ENDPOINT is its management API, never AWS's."""
    gateway = WebSocketGateway(template, local_resources).start()
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def local_resources(
    template: Template, moto_server: MotoServer, redis_server: RedisServer, local_e2b: Any
) -> LocalResources:
    """template.yaml's tables, queues and secrets, created once per session in the session's moto server
    (the E2B key secret holds the local E2B API's key)."""
    return provision(
        template,
        endpoint_url=moto_server.url,
        region=REGION,
        redis_host=redis_server.host,
        redis_port=redis_server.port,
        e2b_api_key=local_e2b.api_key,
    )


@pytest.fixture(scope="session")
def invoker(
    template: Template,
    local_resources: LocalResources,
    local_endpoints: LocalEndpoints,
    websocket_gateway: WebSocketGateway,
) -> InProcessInvoker:
    """`invoker.invoke("CreateSessionFunction", event)` runs the handler in this process with exactly the
    environment the template gives it (resolved locally); `invoker.env_for(id)` is that environment."""
    invoker = InProcessInvoker(template, local_resources, local_overrides(local_endpoints))
    websocket_gateway.runtime = invoker
    return invoker


# --- the whole dev stack, as `make dev` runs it ----------------------------------------------------------


def smoke_target() -> dict[str, Any] | None:
    """The deployed API `make smoke` points the e2e contract tests at, if any (endpoints.json's shape)."""
    url = os.environ.get("SMOKE_API_URL")
    if not url:
        return None
    keys = [os.environ.get("SMOKE_API_KEY"), os.environ.get("SMOKE_API_KEY2")]
    if not keys[0]:
        pytest.fail("smoke mode needs SMOKE_API_KEY (make smoke API=<ApiUrl output> KEY=<an ssk_ key>)")
    return {
        "api_url": url.rstrip("/"),
        "projects": [{"project_id": None, "api_key": key} for key in keys if key],
        "smoke": True,
    }


def local_only(stack: dict[str, Any], what: str) -> None:
    """Skip in smoke mode: `what` needs a part of the dev stack that a deployed API does not expose."""
    if stack.get("smoke"):
        pytest.skip(f"smoke mode ({stack['api_url']}): {what}")


@pytest.fixture(scope="session")
def devstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`python -m devstack --port 0` in a subprocess; yields its endpoints.json once it is ready, and at
    the end checks that SIGTERM stops it (and everything it started) cleanly within 5 s. In smoke mode, the
    deployed API's endpoints instead (nothing is started)."""
    target = smoke_target()
    if target is not None:
        yield target
        return
    state_dir = tmp_path_factory.mktemp("devstack")
    process, endpoints = launch_devstack(state_dir, "--template", str(TEMPLATE))
    try:
        # Generated-case tests send thousands of requests a minute with the demo keys; the limiter is tested
        # with projects of its own (test_edge). Set before any request, as the authorizer caches limits.
        for project in endpoints["projects"]:
            generous = ["--per-minute", str(DEMO_RATE_LIMIT), "--compute-per-minute", str(DEMO_RATE_LIMIT)]
            admin_cli(state_dir / "endpoints.json", "set-limits", project["project_id"], *generous)
        yield endpoints
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=DEVSTACK_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                pytest.fail(f"the dev stack did not stop within {DEVSTACK_STOP_TIMEOUT}s of SIGTERM")
            assert code == 0, f"the dev stack exited with {code}:\n{_tail(Path(endpoints['log']))}"


DEMO_RATE_LIMIT = MAX_RATE_LIMIT_PER_MINUTE  # requests a minute, per key: the e2e suite's demo projects


def admin_cli(endpoints: Path, *args: str) -> str:
    """`session-admin --local --endpoints ENDPOINTS *ARGS`; its output."""
    done = subprocess.run(
        [sys.executable, "-m", "session_service.edges.cli", "--local", "--endpoints", str(endpoints), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def launch_devstack(state_dir: Path, *args: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """`python -m devstack --port 0 --state-dir STATE_DIR *ARGS` in a session of its own (so that its
    session shows whether anything of it is left), once ready: the process and its endpoints.json plus
    `state_dir` and `log` (its output). Killed if it does not become ready."""
    log_path = state_dir / "devstack.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--port", "0", "--state-dir", str(state_dir), *args],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        endpoints = _wait_for_endpoints(process, state_dir / "endpoints.json", log_path)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    endpoints["state_dir"] = str(state_dir)
    endpoints["log"] = str(log_path)
    return process, endpoints


def _wait_for_endpoints(process: subprocess.Popen[bytes], path: Path, log_path: Path) -> dict[str, Any]:
    deadline = time.monotonic() + DEVSTACK_READY_TIMEOUT
    while time.monotonic() < deadline:
        if path.exists():
            return dict(json.loads(path.read_text()))
        if process.poll() is not None:
            pytest.fail(
                f"the dev stack exited with {process.returncode} before it was ready:\n{_tail(log_path)}"
            )
        time.sleep(0.05)
    pytest.fail(f"the dev stack was not ready within {DEVSTACK_READY_TIMEOUT}s:\n{_tail(log_path)}")


def _tail(path: Path, limit: int = 4000) -> str:
    return path.read_text(errors="replace")[-limit:] if path.exists() else ""


def sandbox_processes(*sandbox_ids: str) -> list[int]:
    """Live processes, anywhere on this machine, of these local E2B sandboxes: the local E2B API puts
    E2B_SANDBOX_ID into every command's environment, and the command's children inherit it (Linux)."""
    markers = [f"E2B_SANDBOX_ID={sandbox_id}\0".encode() for sandbox_id in sandbox_ids]
    found = []
    for info in live_processes():
        try:
            environ = Path(f"/proc/{info.pid}/environ").read_bytes()
        except OSError:
            continue  # gone, or not ours
        if any(marker in environ for marker in markers):
            found.append(info.pid)
    return found


def stack_processes(session: int) -> list[int]:
    """Live processes in this session or process group (a dev stack started in a session of its own)."""
    return [info.pid for info in live_processes() if session in (info.sid, info.pgid)]


def can_listen(port: int) -> bool:
    """Whether a server could listen on the port again (binding as servers do: connections the stopped
    one closed may linger in TIME_WAIT)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
        return True


# --- a tiny SAM app for testing the dev stack itself -------------------------------------------------------

SAMPLE_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: test}
  CallsFile: {Type: String, Default: /dev/null}
Globals:
  Function:
    Handler: app.handler
    Timeout: 5
    MemorySize: 256
    Environment:
      Variables:
        FROM_GLOBALS: globals
        CALLS_FILE: !Ref CallsFile
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      StageName: !Ref Stage
      Auth:
        DefaultAuthorizer: KeyAuthorizer
        Authorizers:
          KeyAuthorizer:
            FunctionArn: !GetAtt AuthorizerFunction.Arn
            AuthorizerPayloadFormatVersion: "2.0"
            EnableSimpleResponses: true
            Identity:
              Headers: [x-api-key]
  AuthorizerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: authorizer/
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Environment:
        Variables:
          FROM_FUNCTION: !Sub "${AWS::Region}-${Stage}"
      Events:
        Mode: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: ANY, Path: "/echo/{mode}"}}
        Files: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: "/files/{proxy+}"}}
        Public:
          Type: HttpApi
          Properties: {ApiId: !Ref Api, Method: GET, Path: /public, Auth: {Authorizer: NONE}}
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Timeout: 1
      Events:
        Slow: {Type: HttpApi, Properties: {ApiId: !Ref Api, Method: GET, Path: "/slow/{mode}"}}
"""

SAMPLE_AUTHORIZER = """\
import json
import os


def handler(event, context):
    with open(os.environ["CALLS_FILE"], "a") as calls:
        calls.write(json.dumps(event) + "\\n")
    key = event["headers"].get("x-api-key")
    if key == "boom":
        raise RuntimeError("authorizer failure")
    if key == "deny":
        return {"isAuthorized": False}
    return {"isAuthorized": True, "context": {"project_id": "prj-" + key, "key": key}}
"""

SAMPLE_ECHO = '''\
"""Behaviour chosen by the {mode} path parameter (or ?mode= on /public and /files)."""

import base64
import json
import os
import threading
import time

ACTIVE = 0
PEAK = 0
LOCK = threading.Lock()


def handler(event, context):
    global ACTIVE, PEAK
    params = event.get("pathParameters") or {}
    query = event.get("queryStringParameters") or {}
    mode = params.get("mode") or query.get("mode", "event")
    if mode == "event":
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
    if mode == "plain":
        return {"hello": "world"}
    if mode == "string":
        return "just a string"
    if mode == "binary":
        body = base64.b64encode(bytes(range(256))).decode()
        return {"statusCode": 200, "isBase64Encoded": True, "body": body,
                "headers": {"content-type": "application/octet-stream"}}
    if mode == "cookies":
        return {"statusCode": 201, "cookies": ["a=1", "b=2; Path=/"], "body": "made",
                "headers": {"x-single": "one"}, "multiValueHeaders": {"x-multi": ["1", "2"]}}
    if mode == "malformed":
        return {"statusCode": "teapot"}
    if mode == "raise":
        raise ValueError("the handler failed")
    if mode == "huge":  # just over Lambda's 6,291,556-byte synchronous response limit
        return {"statusCode": 200, "body": "x" * 6_291_556}
    if mode == "crash":
        os._exit(3)
    if mode.startswith("sleep"):
        seconds = float(mode[len("sleep"):] or 0.3)
        with LOCK:
            ACTIVE += 1
            PEAK = max(PEAK, ACTIVE)
        started, marker = time.time(), os.environ.get("MARKER")
        time.sleep(seconds)
        with LOCK:
            ACTIVE -= 1
        return {"pid": os.getpid(), "started": started, "ended": time.time(), "peak": PEAK,
                "marker": marker, "marker_after": os.environ.get("MARKER")}
    if mode == "env":
        return {"pid": os.getpid(), "env": dict(os.environ)}
    if mode == "context":
        return {"function_name": context.function_name, "function_version": context.function_version,
                "invoked_function_arn": context.invoked_function_arn, "memory": context.memory_limit_in_mb,
                "request_id": context.aws_request_id, "log_group": context.log_group_name,
                "log_stream": context.log_stream_name, "remaining": context.get_remaining_time_in_millis()}
    return {"statusCode": 400, "body": "unknown mode " + mode}
'''


@pytest.fixture(scope="session")
def sample_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with template.yaml, authorizer/app.py and echo/app.py (see the sources above)."""
    root = tmp_path_factory.mktemp("sample_app")
    (root / "template.yaml").write_text(SAMPLE_TEMPLATE)
    for name, source in (("authorizer", SAMPLE_AUTHORIZER), ("echo", SAMPLE_ECHO)):
        (root / name).mkdir()
        (root / name / "app.py").write_text(textwrap.dedent(source))
    return root
