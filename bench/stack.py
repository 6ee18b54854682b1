"""The local services a bench runs against, the template's functions, and a project to call them as.

The same real services the tests use: a moto server (DynamoDB, SQS, Secrets Manager, EventBridge), a
real redis-server and the local E2B API, with template.yaml's tables and queues provisioned in moto. The
functions run in this process (`devstack.functions.InProcessInvoker`) with their template environment;
requests go through the local API Gateway (`devstack.gateway.Gateway`: routes and authorizers from
template.yaml), or straight to one handler when a bench times the handler alone.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import http.client
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import boto3
import redis

from devstack.e2b_local import LocalE2B
from devstack.functions import InProcessInvoker, Invocation, LocalEndpoints, local_overrides
from devstack.gateway import Gateway, Request
from devstack.provision import provision
from devstack.services import MotoServer, RedisServer
from devstack.template import Template
from devstack.websocket import WebSocketGateway

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
REGION = "us-east-1"
# The bench project's own rate limits (session-admin set-limits), the most a project may have: every route
# runs its limiter as it does for any caller, and no bench makes enough requests to be refused.
BENCH_RATE_LIMIT_PER_MINUTE = 1_000_000


def sample_event(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((EVENTS / name).read_text())
    data.update(changes)
    return data


@dataclass
class Reply:
    status: int
    body: Any


class Recorder:
    """The invoker as the gateway's runtime, telling `on_invoke` which function ran (for per-function I/O)."""

    def __init__(self, invoker: InProcessInvoker) -> None:
        self.invoker = invoker
        self.around: Callable[[str, Callable[[], Invocation]], Invocation] = lambda _, run: run()

    def execute(self, logical_id: str, event: Any) -> Invocation:
        return self.around(logical_id, lambda: self.invoker.execute(logical_id, event))


class Bound:
    """A handler held with its environment. `bound(event)` calls it; to time the handler alone, `prepare`
    (untimed: each invocation's own copy of the event and its context, as Lambda's runtime makes them)
    and then `run` what it returned."""

    def __init__(self, handle: Callable[..., Any], make_context: Callable[[], Any]) -> None:
        self._handle = handle
        self._make_context = make_context

    def prepare(self, event: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        return copy.deepcopy(event), self._make_context()

    def run(self, prepared: tuple[dict[str, Any], Any]) -> Any:
        return self._handle(*prepared)

    def __call__(self, event: dict[str, Any]) -> Any:
        return self.run(self.prepare(event))


class BenchStack:
    def __init__(self) -> None:
        self.template = Template.load(ROOT / "template.yaml")
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> BenchStack:
        try:
            self._start()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._exit.close()

    def _start(self) -> None:
        self.moto = self._exit.enter_context(MotoServer())
        self.cache = self._exit.enter_context(RedisServer())
        self.e2b = self._exit.enter_context(LocalE2B())
        self.resources = provision(
            self.template,
            endpoint_url=self.moto.url,
            region=REGION,
            redis_host=self.cache.host,
            redis_port=self.cache.port,
            e2b_api_key=self.e2b.api_key,
        )
        # The WebSocket API (the live feed): its management endpoint is part of the functions' environment.
        self.websocket = WebSocketGateway(self.template, self.resources).start()
        self._exit.callback(self.websocket.stop)
        self.endpoints = LocalEndpoints(
            self.moto.url,
            REGION,
            self.e2b.url,
            self.e2b.url,
            self.e2b.api_key,
            websocket_management_url=self.websocket.management_url,
        )
        # moto on a shared machine can take over a second to answer: the functions wait for it rather than
        # answer 503 mid-bench (how long a function waits does not change the work it does).
        self.overrides = {
            **local_overrides(self.endpoints),
            "DYNAMODB_CONNECT_TIMEOUT_SECONDS": "5",
            "DYNAMODB_READ_TIMEOUT_SECONDS": "10",
        }
        # The bench's own SDK clients (raw calls, setup) reach moto with the same dummy credentials.
        for name in (
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_EC2_METADATA_DISABLED",
        ):
            os.environ[name] = self.overrides[name]
        self.invoker = InProcessInvoker(self.template, self.resources, self.overrides)
        self.recorder = Recorder(self.invoker)
        self.gateway = Gateway(self.template, self.resources, self.recorder, stage="$default")
        self.websocket.runtime = self.recorder
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.redis = redis.Redis(host=self.cache.host, port=self.cache.port, protocol=2)
        # As the cache adapter's client talks (RESP2, str replies): the raw side of a comparison.
        self.redis_text = redis.Redis(
            host=self.cache.host, port=self.cache.port, protocol=2, decode_responses=True
        )

        from session_service.runtime import container_for
        from session_service.settings import Settings

        admin = container_for(
            Settings(
                region=REGION,
                aws_endpoint_url=self.moto.url,
                projects_table=self.table("ProjectsTable"),
                api_keys_table=self.table("ApiKeysTable"),
            )
        ).admin
        self.project_id = admin.create_project("bench").project_id
        admin.set_limits(self.project_id, BENCH_RATE_LIMIT_PER_MINUTE, BENCH_RATE_LIMIT_PER_MINUTE)
        self.api_key = admin.issue_key(self.project_id).api_key

    # -- names ---------------------------------------------------------------------------------------------

    def table(self, logical_id: str) -> str:
        return self.resources.ref(logical_id)

    @property
    def queue_url(self) -> str:
        return self.resources.ref("TeardownQueue")

    # -- calling functions ---------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: dict[str, str] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """One request through the local API Gateway: its route, its authorizer, its function."""
        sent = [("content-type", "application/json"), *(headers or {}).items()]
        sent.append(("authorization", f"Bearer {token}") if token else ("x-api-key", self.api_key))
        request = Request(
            method=method,
            path=path,
            query=urlencode(query or {}),
            protocol="HTTP/1.1",
            headers=sent,
            body=(json.dumps(body) if body is not None else "").encode(),
            source_ip="127.0.0.1",
            request_id=uuid.uuid4().hex,
        )
        reply = self.gateway.handle(request)
        return Reply(reply.status, json.loads(reply.body.decode() or "null"))

    def create_session(self, **body: Any) -> str:
        reply = self.call("POST", "/v1/sessions", body={"user_id": "bench", **body})
        assert reply.status == 201, reply
        return str(reply.body["id"])

    @functools.cached_property
    def authorizer_context(self) -> dict[str, Any]:
        """What the API key authorizer hands a route for the bench's key, from one real decision: the
        project, the credential and the project's rate limits, so that a route runs its rate limiter (one
        Redis call) as it does behind API Gateway."""
        from session_service.services.auth import PROJECT_CONTEXT_KEY

        event = sample_event("authorizer.json", identitySource=[self.api_key])
        event["headers"]["x-api-key"] = self.api_key
        context = dict(self.invoker.invoke("AuthorizerFunction", event)["context"])
        if context.get(PROJECT_CONTEXT_KEY) != self.project_id:
            raise RuntimeError(f"the authorizer did not accept the bench's key: {context}")
        return context

    def http_event(
        self, name: str, path: str, session_id: str | None = None, **changes: Any
    ) -> dict[str, Any]:
        """A sample event (events/) for this project: the authorizer's context as API Gateway passes it."""
        event = sample_event(name, rawPath=path, **changes)
        event["requestContext"]["http"]["path"] = path
        event["requestContext"]["authorizer"] = {"lambda": dict(self.authorizer_context)}
        if session_id is not None:
            event["pathParameters"] = {**(event.get("pathParameters") or {}), "session_id": session_id}
        return event

    @contextlib.contextmanager
    def handler(self, logical_id: str, env_overrides: dict[str, str] | None = None) -> Iterator[Bound]:
        """The function's handler with its environment applied for the whole block."""
        with self.invoker.bound(logical_id, env_overrides) as handle:
            yield Bound(handle, lambda: self.invoker.context_for(logical_id))

    # -- E2B -----------------------------------------------------------------------------------------------

    def create_sandboxes(self, e2b_url: str, api_key: str, session_id: str, count: int) -> list[str]:
        """`count` sandboxes with the session's metadata (as execute creates them), every tenth paused."""
        metadata = {"project_id": self.project_id, "session_id": session_id}
        return create_sandboxes(e2b_url, api_key, metadata, count)


def create_sandboxes(e2b_url: str, api_key: str, metadata: dict[str, str], count: int) -> list[str]:
    """Over one keep-alive connection (the E2B control plane's REST API, as the SDK calls it)."""
    parts = urlsplit(e2b_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    headers = {"X-API-KEY": api_key, "content-type": "application/json"}
    ids = []
    try:
        for index in range(count):
            body = json.dumps(
                {"templateID": "base", "timeout": 3600, "metadata": metadata, "autoPause": True}
            )
            connection.request("POST", "/sandboxes", body=body, headers=headers)
            reply = connection.getresponse()
            data = json.loads(reply.read() or b"null")
            if reply.status != 201:
                raise RuntimeError(f"local E2B refused a create: {reply.status} {data}")
            ids.append(data["sandboxID"])
            if index % 10 == 9:
                connection.request("POST", f"/sandboxes/{data['sandboxID']}/pause", headers=headers)
                paused = connection.getresponse()
                paused.read()
    finally:
        connection.close()
    return ids


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
