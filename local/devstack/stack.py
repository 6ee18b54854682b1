"""The whole local stack in one object: services, provisioning from template.yaml, demo projects, the
function runtime, the gateway and background pollers, started in order and stopped in reverse.

Stopping is bounded in every state (requests in flight, streams held open, long invocations, a service
SIGSTOPped or already dead): nothing waits for a thread that may be stuck, and every wait has a limit. See
`DevStack.stop` and, for a forced exit, `DevStack.kill`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from devstack.functions import (
    LocalEndpoints,
    ProcessRuntime,
    applied_env,
    local_overrides,
    template_variables,
)
from devstack.gateway import Gateway
from devstack.pollers import (
    DynamoDbStreamEventSourceMapping,
    ScheduleRunner,
    SqsEventSourceMapping,
    rate_seconds,
)
from devstack.provision import provision, tap_event_buses
from devstack.services import LOOPBACK, E2BServer, MotoServer, RedisServer, kill_sessions, stop_all
from devstack.template import QUEUE, SECRET, TABLE_TYPES, LocalResources, Template
from devstack.websocket import WebSocketGateway

log = logging.getLogger("devstack")

DEMO_PROJECTS = ("demo-a", "demo-b")
DOCKER_HOST = "host.docker.internal"
POLLER_GRACE = 1.0  # seconds pollers get once the runtime has ended their invocations (an SQS long poll)
SERVICE_GRACE = 1.5  # seconds each service gets after SIGTERM before SIGKILL (all of them in parallel)
RESTART_DELAY = 2.0  # seconds a dead redis-server stays down before the stack starts a new, empty one


class Poller(Protocol):
    """A background event source run beside the gateway (e.g. SQS → function, like Lambda's event source
    mapping; a schedule → function, like EventBridge). Started after the gateway, stopped before it."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


def make_pollers(
    template: Template,
    resources: LocalResources,
    runtime: ProcessRuntime,
    *,
    endpoint_url: str,
    region: str,
    schedule_period_seconds: float | None = None,
) -> list[Poller]:
    """Event sources other than HTTP, as the template declares them: one SQS event source mapping per SQS
    event (batch size and ReportBatchItemFailures from the template), one DynamoDB Streams event source
    mapping per stream event, and one runner per schedule (at the template's rate, or every
    `schedule_period_seconds` locally so that the sweeper is seen working)."""
    pollers: list[Poller] = []
    for function in template.functions.values():
        for source in function.sqs:
            if not source.enabled or source.queue_id is None:
                continue
            pollers.append(
                SqsEventSourceMapping(
                    runtime,
                    function.logical_id,
                    queue_url=resources.ref(source.queue_id),
                    queue_arn=resources.attribute(source.queue_id, "Arn"),
                    region=region,
                    endpoint_url=endpoint_url,
                    batch_size=source.batch_size,
                    report_batch_item_failures="ReportBatchItemFailures" in source.function_response_types,
                )
            )
        for stream in function.streams:
            if not stream.enabled or stream.table_id is None:
                continue
            pollers.append(
                DynamoDbStreamEventSourceMapping(
                    runtime,
                    function.logical_id,
                    stream_arn=resources.attribute(stream.table_id, "StreamArn"),
                    region=region,
                    endpoint_url=endpoint_url,
                    batch_size=stream.batch_size,
                    starting_position=stream.starting_position,
                    report_batch_item_failures="ReportBatchItemFailures" in stream.function_response_types,
                    bisect_on_error=stream.bisect_on_error,
                    maximum_retry_attempts=stream.maximum_retry_attempts,
                    maximum_record_age_seconds=stream.maximum_record_age_seconds,
                )
            )
        for schedule in function.schedules:
            if not schedule.enabled:
                continue
            period = schedule_period_seconds or rate_seconds(schedule.schedule)
            pollers.append(
                ScheduleRunner(
                    runtime, function.logical_id, period_seconds=period, region=region, rule=schedule.event
                )
            )
    return pollers


@dataclass
class DevStackConfig:
    template_path: Path = Path("template.yaml")
    state_dir: Path = Path(".devstack")
    host: str = LOOPBACK
    port: int = 3000
    region: str = "us-east-1"
    stack_name: str = "devstack"
    max_workers: int = 4
    stage: str | None = None  # None: the HttpApi's StageName, as deployed
    authorizer_cache: bool = False
    docker_host: str | None = None  # written into env.json instead of 127.0.0.1
    projects: tuple[str, ...] = DEMO_PROJECTS
    parameters: dict[str, Any] = field(default_factory=dict)
    schedule_period_seconds: float | None = 10.0  # None: the template's rate (5 minutes for the sweeper)
    # A redis-server that dies (killed, crashed) is replaced after this many seconds, on the same port and
    # empty, as a managed cache replaces a failed node; None: it stays dead.
    restart_delay: float | None = RESTART_DELAY


class DevStack:
    def __init__(self, config: DevStackConfig, *, function_log: IO[bytes] | None = None) -> None:
        self.config = config
        self.function_log = function_log
        self.template = Template.load(config.template_path)
        self.moto = MotoServer(log_path=config.state_dir / "moto.log")
        self.redis = RedisServer(log_path=config.state_dir / "redis.log")
        self.e2b = E2BServer(log_path=config.state_dir / "e2b.log")
        self.resources: LocalResources | None = None
        self.runtime: ProcessRuntime | None = None
        self.gateway: Gateway | None = None
        self.websocket: WebSocketGateway | None = None
        self.events_tap: str | None = None  # an SQS queue that receives everything put on the event bus
        self.pollers: list[Poller] = []
        self.projects: list[dict[str, str]] = []
        self._service_sessions: set[int] = set()  # for the sweep, even after the services are forgotten
        self._stop_lock = threading.Lock()
        self._dead_since: float | None = None  # when the redis-server was first seen dead

    @property
    def endpoints_path(self) -> Path:
        return self.config.state_dir / "endpoints.json"

    @property
    def env_path(self) -> Path:
        return self.config.state_dir / "env.json"

    def start(self) -> dict[str, Any]:
        """Start everything; endpoints.json is written last, so its presence means "ready"."""
        config = self.config
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.endpoints_path.unlink(missing_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        endpoints = self.endpoints()
        _write_json(self.env_path, self.sam_env_vars(config.docker_host))
        _write_json(self.endpoints_path, endpoints)
        return endpoints

    def _start(self) -> None:
        config = self.config
        for service in (self.moto, self.redis, self.e2b):
            service.start()
            if service.session_id is not None:
                self._service_sessions.add(service.session_id)
        self.resources = provision(
            self.template,
            endpoint_url=self.moto.url,
            region=config.region,
            stack_name=config.stack_name,
            redis_host=self.redis.host,
            redis_port=self.redis.port,
            e2b_api_key=self.e2b.api_key,
            parameters=config.parameters,
        )
        self.projects = self.seed(config.projects)
        if self.template.websocket_api is not None:
            # Its ports first (the functions' environment names its management endpoint), its runtime later.
            self.websocket = WebSocketGateway(self.template, self.resources, host=config.host).start()
        self.events_tap = tap_event_buses(self.template, self.resources, self.moto.url)
        self.runtime = ProcessRuntime(
            self.template,
            self.resources,
            self.overrides,
            max_workers=config.max_workers,
            log=self.function_log,
        )
        self.gateway = Gateway(
            self.template,
            self.resources,
            self.runtime,
            host=config.host,
            port=config.port,
            stage=config.stage,
            authorizer_cache=config.authorizer_cache,
        ).start()
        if self.websocket is not None:
            self.websocket.runtime = self.runtime
        for poller in make_pollers(
            self.template,
            self.resources,
            self.runtime,
            endpoint_url=self.moto.url,
            region=config.region,
            schedule_period_seconds=config.schedule_period_seconds,
        ):
            self.pollers.append(poller)
            poller.start()

    def revive(self) -> bool:
        """Replace a redis-server that died (a fault test's SIGKILL, a crash) once it has been dead for
        `restart_delay` seconds: a new, empty one on the same port, and endpoints.json names its pid. Only
        the cache: moto holds the tables and the E2B API its sandboxes, which a restart would lose, and their
        production counterparts do not lose them. Call it from the thread that runs the stack (`make dev`'s
        main loop), never concurrently with `stop()`. True when it restarted the server."""
        delay = self.config.restart_delay
        if delay is None or self.redis.running or self.resources is None:
            self._dead_since = None
            return False
        now = time.monotonic()
        if self._dead_since is None:
            self._dead_since = now
            log.warning("redis-server (pid %s) died; a new, empty one in %.1fs", self.redis.pid, delay)
        if now - self._dead_since < delay:
            return False
        self._dead_since = None
        self.redis.restart()
        if self.redis.session_id is not None:
            self._service_sessions.add(self.redis.session_id)
        if self.endpoints_path.exists():
            _write_json(self.endpoints_path, self.endpoints())
        log.warning("redis-server restarted empty (pid %s)", self.redis.pid)
        return True

    def stop(self) -> None:
        """Stop whatever was started, within a few seconds in every state; never raises; idempotent.

        Order: pollers, gateway, function workers, then the E2B API, redis and moto together. A poller can
        be in a long invocation: its stop only sets a flag (it runs on a thread of its own), and stopping
        the runtime kills busy workers, so that invocation returns at once. Open connections are cut, not
        waited for. Each service gets SIGCONT, SIGTERM and, after SERVICE_GRACE, SIGKILL to its group.
        Last, anything still alive in a service's or worker's session is SIGKILLed (Linux).
        """
        with self._stop_lock:
            self.endpoints_path.unlink(missing_ok=True)
            sessions = self._sessions()
            pollers, self.pollers = self.pollers, []
            stopping = [_in_thread(poller.stop, f"stop-{poller.name}") for poller in pollers]
            if self.gateway is not None:
                _step("the gateway", self.gateway.stop)
            if self.websocket is not None:
                _step("the WebSocket gateway", self.websocket.stop)
            if self.runtime is not None:
                _step("the function workers", self.runtime.stop)
            deadline = time.monotonic() + POLLER_GRACE
            for thread in stopping:
                thread.join(max(0.0, deadline - time.monotonic()))
            busy = [thread.name for thread in stopping if thread.is_alive()]
            if busy:
                log.info("not waiting for %s (their threads end with the process)", ", ".join(busy))
            _step("the services", lambda: stop_all([self.e2b, self.redis, self.moto], SERVICE_GRACE))
            killed = kill_sessions(sessions)
            if killed:
                log.warning("killed %d process(es) left in the stack's sessions: %s", len(killed), killed)

    def kill(self) -> None:
        """A forced exit: SIGKILL every child, its process group and everything in its session, now.

        Takes no lock and waits for nothing, so that a signal handler can call it whatever the main thread
        is doing."""
        sessions = set(self._service_sessions)
        for service in (self.e2b, self.redis, self.moto):
            service.kill()
        if self.runtime is not None:
            sessions.update(self.runtime.kill_now())
        kill_sessions(sessions)

    def _sessions(self) -> set[int]:
        """The sessions of the services and of the running workers (each leads one of its own)."""
        sessions = set(self._service_sessions)
        if self.runtime is not None:
            sessions.update(self.runtime.pids())
        return sessions

    # -- what the stack offers -----------------------------------------------------------------------------

    @property
    def local_endpoints(self) -> LocalEndpoints:
        return LocalEndpoints(
            aws_endpoint_url=self.moto.url,
            region=self.config.region,
            e2b_api_url=self.e2b.url,
            e2b_sandbox_url=self.e2b.url,
            e2b_api_key=self.e2b.api_key,
            websocket_management_url=self.websocket.management_url if self.websocket else None,
        )

    @property
    def overrides(self) -> dict[str, str]:
        return local_overrides(self.local_endpoints)

    def sam_env_vars(self, docker_host: str | None = None) -> dict[str, dict[str, str]]:
        """A `sam local invoke --env-vars` file: each function's template variables and the local overrides.

        SAM applies only the variables a function declares in the template, and inside a container
        127.0.0.1 is the container: pass `docker_host` (host.docker.internal) to point at this machine.
        """
        assert self.resources is not None
        env_vars: dict[str, dict[str, str]] = {}
        for logical_id in self.template.functions:
            env = {**template_variables(self.template, logical_id, self.resources), **self.overrides}
            if docker_host:
                env = {name: _rehost(value, docker_host) for name, value in env.items()}
            env_vars[logical_id] = env
        return env_vars

    def endpoints(self) -> dict[str, Any]:
        assert self.resources is not None and self.gateway is not None
        resources = self.resources
        return {
            "api_url": self.gateway.url,
            "ws_url": self.websocket.url if self.websocket else None,
            "events_tap_queue_url": self.events_tap,
            "aws_endpoint_url": self.moto.url,
            "region": self.config.region,
            "redis_url": self.redis.url,
            "e2b_api_url": self.e2b.url,
            "e2b_sandbox_url": self.e2b.url,
            "e2b_api_key": self.e2b.api_key,
            "projects": self.projects,
            "tables": resources.names(*TABLE_TYPES),
            "queues": resources.names(QUEUE),
            "secrets": resources.names(SECRET),
            "env_vars_file": str(self.env_path.resolve()),
            "pid": os.getpid(),
            "pids": {
                "devstack": os.getpid(),
                "moto": self.moto.pid,
                "redis": self.redis.pid,
                "e2b": self.e2b.pid,
            },
        }

    # -- demo data -----------------------------------------------------------------------------------------

    def admin_env(self) -> dict[str, str]:
        """Every function's variables together (the tables the admin service needs) plus the overrides."""
        assert self.resources is not None
        env: dict[str, str] = {}
        for logical_id in self.template.functions:
            env.update(template_variables(self.template, logical_id, self.resources))
        return {**env, **self.overrides}

    def seed(self, names: tuple[str, ...]) -> list[dict[str, str]]:
        """Create the demo projects and one API key each with the lead's admin service (what `session-admin`
        does), so the walkthrough works without a setup step."""
        if not names:
            return []
        with applied_env(self.admin_env()):
            from session_service.runtime import admin_service

            admin = admin_service()
            projects = []
            for name in names:
                project = admin.create_project(name=name)
                issued = admin.issue_key(project.project_id)
                projects.append({"name": name, "project_id": project.project_id, "api_key": issued.api_key})
        return projects

    def walkthrough(self) -> str:
        assert self.gateway is not None
        key = self.projects[0]["api_key"] if self.projects else "<an API key from session-admin --local>"
        return WALKTHROUGH.format(
            url=self.gateway.url, key=key, endpoints=self.endpoints_path, env_vars=self.env_path
        )


WALKTHROUGH = """\
Dev stack ready at {url}
  endpoints and demo keys: {endpoints}    sam local --env-vars: {env_vars}

  API={url}; KEY={key}
  H=(-H "x-api-key: $KEY" -H "content-type: application/json")   # bash
  ID=$(curl -s -X POST "$API/v1/sessions" "${{H[@]}}" -d '{{"user_id": "u1", "tag": "demo"}}' \\
       | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  curl -s "$API/v1/sessions/$ID" "${{H[@]}}"
  curl -s "$API/v1/sessions?limit=10" "${{H[@]}}"
  curl -s -X PATCH "$API/v1/sessions/$ID" "${{H[@]}}" -d '{{"metadata":{{"via":"cli"}},"expected_version":1}}'
  curl -s -X POST "$API/v1/sessions/$ID/execute" "${{H[@]}}" -d '{{"command":"echo hello"}}'
  curl -s -X DELETE "$API/v1/sessions/$ID" "${{H[@]}}"      # sandbox gone within seconds; GET is 404
  curl -s "$API/v1/sessions?include_deleted=true" "${{H[@]}}"

Ctrl-C stops everything."""


def _in_thread(target: Callable[[], None], name: str) -> threading.Thread:
    """Run `target` on a daemon thread (one that may stay blocked without holding up the exit)."""
    thread = threading.Thread(target=_step, args=(name, target), name=name, daemon=True)
    thread.start()
    return thread


def _step(what: str, stop: Callable[[], None]) -> None:
    started = time.monotonic()
    try:
        stop()
    except Exception:
        log.exception("stopping %s failed", what)
    log.debug("stopped %s in %.2fs", what, time.monotonic() - started)


def _rehost(value: str, host: str) -> str:
    return value.replace(LOOPBACK, host).replace("localhost", host)


def _write_json(path: Path, data: Any) -> None:
    """Atomically, so a reader polling for the file never sees half of it."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(temporary, path)
