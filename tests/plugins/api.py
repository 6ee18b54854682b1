"""Calling the route functions the way API Gateway does: the local gateway (devstack.gateway) routes the
request by template.yaml, runs the route's authorizer and builds the payload 2.0 event, and the functions
run in-process (devstack.functions.InProcessInvoker) against the session's real services."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from devstack.functions import Invocation
from devstack.gateway import Gateway, Request

EVENTS = Path(__file__).resolve().parents[2] / "events"


def sample_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Project:
    project_id: str
    api_key: str


class _Runtime:
    """The invoker as the gateway's runtime, with per-call environment overrides for the route's function
    (a test points one function at a broken dependency; the authorizer keeps its own environment)."""

    def __init__(self, invoker: Any) -> None:
        self.invoker = invoker
        self.local = threading.local()

    def execute(self, logical_id: str, event: Any) -> Invocation:
        route_function = getattr(self.local, "route", None)
        overrides = getattr(self.local, "env", None) if logical_id == route_function else None
        return self.invoker.execute(logical_id, event, env_overrides=overrides)


class Api:
    """A client of the route functions through the local API Gateway (routes, authorizers, events)."""

    def __init__(self, invoker: Any) -> None:
        self.invoker = invoker
        self.runtime = _Runtime(invoker)
        self.gateway = Gateway(invoker.template, invoker.resources, self.runtime, stage="$default")

    def create(self, project: Project, **body: object) -> dict[str, Any]:
        """POST /v1/sessions with user_id "u1" unless given; asserts the 201."""
        reply = self.call("POST", "/v1/sessions", key=project.api_key, body={"user_id": "u1", **body})
        assert reply.status == 201, reply.body
        return reply.body

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None,
        token: str | None = None,
        body: Any = None,
        raw_body: str | None = None,
        query: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        sent = [("content-type", "application/json"), *(headers or {}).items()]
        if key is not None:
            sent.append(("x-api-key", key))
        if token is not None:
            sent.append(("authorization", f"Bearer {token}"))
        request = Request(
            method=method,
            path=path,
            query=urlencode(query or {}),
            protocol="HTTP/1.1",
            headers=sent,
            body=(data or "").encode(),
            source_ip="127.0.0.1",
            request_id=uuid.uuid4().hex,
        )
        matched = self.gateway.match(method, path)
        self.runtime.local.route = matched[0].http.function if matched else None
        self.runtime.local.env = env
        try:
            reply = self.gateway.handle(request)
        finally:
            self.runtime.local.env = None
        text = reply.body.decode() or "null"
        headers = {name.lower(): value for name, value in dict(reply.headers).items()}  # case-insensitive
        return Reply(status=reply.status, body=json.loads(text), headers=headers)


@pytest.fixture(scope="session")
def api(invoker: Any) -> Api:
    return Api(invoker)


@pytest.fixture(scope="session")
def admin(local_resources: Any, local_endpoints: Any, aws_env: Any) -> Any:
    """The admin service (what `session-admin` uses) against the session's tables."""
    from session_service.runtime import container_for
    from session_service.settings import Settings

    settings = Settings(
        region=local_endpoints.region,
        aws_endpoint_url=local_endpoints.aws_endpoint_url,
        projects_table=local_resources.ref("ProjectsTable"),
        api_keys_table=local_resources.ref("ApiKeysTable"),
    )
    return container_for(settings).admin


@pytest.fixture
def project(admin: Any) -> Project:
    created = admin.create_project("test")
    return Project(created.project_id, admin.issue_key(created.project_id).api_key)


@pytest.fixture
def other_project(admin: Any) -> Project:
    created = admin.create_project("other")
    return Project(created.project_id, admin.issue_key(created.project_id).api_key)
