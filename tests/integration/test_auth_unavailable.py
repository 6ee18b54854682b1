"""When the authorizer cannot read the key store (DynamoDB down), no decision that API Gateway may cache
says so: the API-key authorizer (identity sources, cached per key) fails, which API Gateway answers with a
500 it never caches; the session authorizer (none, never cached) lets the request through marked
unavailable, and the route answers 503 service_unavailable in our error format, running nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

from devstack.services import free_port
from plugins.api import sample_event


def closed() -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}


def test_the_cached_api_key_authorizer_fails_rather_than_cache_an_outage(invoker: Any) -> None:
    event = sample_event("authorizer.json")
    assert event["identitySource"]
    invocation = invoker.execute("AuthorizerFunction", event, env_overrides=closed())
    assert not invocation.ok


def test_the_session_authorizer_marks_the_request_and_the_route_answers_503(invoker: Any) -> None:
    event = sample_event("authorizer.json")
    event["identitySource"] = None  # SessionAuthorizer has no identity source
    invocation = invoker.execute("AuthorizerFunction", event, env_overrides=closed())
    assert invocation.ok and invocation.result["isAuthorized"] is True
    context = invocation.result["context"]
    assert context["project_id"] == "" and context["auth_unavailable"] == "true"

    route = copy.deepcopy(sample_event("get_session.json"))
    route["requestContext"]["authorizer"] = {"lambda": context}
    reply = invoker.invoke("GetSessionFunction", route)
    body = json.loads(reply["body"])
    assert reply["statusCode"] == 503 and body["error"]["code"] == "service_unavailable"
    assert "Traceback" not in reply["body"]
