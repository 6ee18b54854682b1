"""Calling the route functions the way API Gateway does: events built from the samples in events/,
run through the template's authorizer and handler functions in-process (see devstack.functions)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EVENTS = Path(__file__).resolve().parents[2] / "events"

# (method, route) → (function logical id, sample event)
ROUTES = {
    ("POST", "/v1/sessions"): ("CreateSessionFunction", "create_session.json"),
    ("GET", "/v1/sessions"): ("ListSessionsFunction", "list_sessions.json"),
    ("GET", "/v1/sessions/{session_id}"): ("GetSessionFunction", "get_session.json"),
    ("PATCH", "/v1/sessions/{session_id}"): ("UpdateSessionFunction", "update_session.json"),
    ("DELETE", "/v1/sessions/{session_id}"): ("DeleteSessionFunction", "delete_session.json"),
    ("POST", "/v1/sessions/{session_id}/execute"): ("ExecuteFunction", "execute.json"),
}


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


class Api:
    """A client of the route functions: authorizer first (with the key), then the route's handler."""

    def __init__(self, invoker: Any) -> None:
        self.invoker = invoker

    def authorize(self, api_key: str | None) -> dict[str, Any]:
        event = sample_event("authorizer.json")
        event["headers"].pop("x-api-key", None)
        if api_key is not None:
            event["headers"]["x-api-key"] = api_key
            event["identitySource"] = [api_key]
        return self.invoker.invoke("AuthorizerFunction", event)

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
        body: Any = None,
        raw_body: str | None = None,
        query: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Reply:
        parts = path.strip("/").split("/")
        route = "/".join(["", "v1", "sessions", "{session_id}", *parts[3:]][: len(parts) + 1])
        function, sample = ROUTES[(method, route)]
        event = copy.deepcopy(sample_event(sample))
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["pathParameters"] = {"session_id": parts[2]} if len(parts) >= 3 else None
        event["queryStringParameters"] = query or None
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in (query or {}).items())
        event["body"] = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        decision = self.authorize(key)
        assert decision["isAuthorized"] is True
        event["requestContext"]["authorizer"] = {"lambda": decision.get("context", {})}
        result = self.invoker.invoke(function, event, env_overrides=env)
        text = result.get("body") or "null"
        return Reply(status=result["statusCode"], body=json.loads(text), headers=result.get("headers") or {})


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
