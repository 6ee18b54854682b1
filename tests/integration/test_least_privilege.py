"""Least privilege, checked: each function's DynamoDB, SQS, Secrets Manager and KMS grants in template.yaml
are exactly the calls its code makes.

The route functions run as API Gateway runs them (plugins.api: the local gateway, their authorizer, the
template's environment), the WebSocket routes with the events the WebSocket API sends, the teardown, sweeper
and stream consumers through their event sources, against the real local services. Every AWS call is
recorded at botocore's BaseClient._make_api_call (boto3 and PynamoDB both go through it) and attributed to
the function being invoked; a transaction's items count as the actions IAM authorises them as
(Put/Update/Delete/ConditionCheck per table). A call without a grant fails the deploy's
first request; a grant without a call is a privilege nobody needs. The few grants for paths a test here
cannot reach are listed in NOT_DRIVEN, each with the path that needs it. Every function of the template is
driven, those without grants too: a call they make would have no grant.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import botocore.client
import pytest
from aws_lambda_powertools.utilities import parameters

from devstack.template import Template
from devstack.websocket import WebSocketGateway
from plugins.api import Api, Project
from plugins.streams import StreamPipeline
from plugins.teardown import TeardownPipeline
from session_service.runtime import container_for

SERVICES = ("dynamodb", "sqs", "secretsmanager", "kms")
Grant = tuple[str, str, str | None]  # (action, resource logical id, index name or None)

# Grants whose call only a failure path makes, which these tests do not provoke.
NOT_DRIVEN: dict[tuple[str, Grant], str] = {
    ("ExecuteFunction", ("sqs:SendMessage", "TeardownQueue", None)): (
        "workbench fence: a sandbox created for a session deleted meanwhile could not be killed"
    ),
    ("CallToolFunction", ("sqs:SendMessage", "TeardownQueue", None)): "workbench fence, as ExecuteFunction",
    ("McpFunction", ("sqs:SendMessage", "TeardownQueue", None)): "workbench fence, as ExecuteFunction",
    ("TeardownFunction", ("sqs:SendMessage", "TeardownQueue", None)): (
        "re-enqueue: a session with more sandboxes (or messages) than one run handles"
    ),
    ("ListSessionsFunction", ("dynamodb:Query", "SessionsTable", "by_activity")): (
        "the active_since listing, which the route does not take yet"
    ),
    ("CreateSessionFunction", ("kms:Decrypt", "ContentKey", None)): (
        "a process that did not make the project's key unwraps it (cold, or after the key cache's TTL)"
    ),
    ("CreateSessionFunction", ("dynamodb:DeleteItem", "IdempotencyTable", None)): (
        "a create with an Idempotency-Key failing after its key was recorded (DynamoDB down, a lost tag race)"
    ),
}
DRIVEN = [
    "AuthorizerFunction",
    "CreateSessionFunction",
    "GetSessionFunction",
    "ListSessionsFunction",
    "UpdateSessionFunction",
    "PutAgentStateFunction",
    "DeleteSessionFunction",
    "ExecuteFunction",
    "CreateTokenFunction",
    "PutToolFunction",
    "GetToolFunction",
    "ListToolsFunction",
    "DeleteToolFunction",
    "SessionToolsFunction",
    "CallToolFunction",
    "AppendMessageFunction",
    "ListMessagesFunction",
    "TeardownFunction",
    "SweeperFunction",
    "McpFunction",
    "OpenApiFunction",
    "WsConnectFunction",
    "WsDefaultFunction",
    "WsDisconnectFunction",
    "CacheInvalidatorFunction",
    "NotifierFunction",
]


def granted(template: Template, logical_id: str) -> set[Grant]:
    grants: set[Grant] = set()
    for policy in template.resources[logical_id]["Properties"].get("Policies") or []:
        for statement in policy.get("Statement") or []:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            for action in actions:
                if action.split(":")[0] in SERVICES:
                    grants |= {(action, *_resource(resource)) for resource in resources}
    return grants


def _resource(expression: Any) -> tuple[str, str | None]:
    if "Fn::GetAtt" in expression:
        return expression["Fn::GetAtt"][0], None
    if "Ref" in expression:
        return expression["Ref"], None
    match = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/(.+)", expression["Fn::Sub"])
    assert match, expression
    return match.group(1), match.group(2)


class Recorder:
    """The AWS calls each function makes while it is being invoked."""

    def __init__(self, resources: Any) -> None:
        self.by_physical = {str(res.ref): lid for lid, res in resources.resources.items()}
        self.by_physical |= {str(res.attributes.get("Arn")): lid for lid, res in resources.resources.items()}
        self.calls: dict[str, set[Grant]] = defaultdict(set)
        self.invoked: set[str] = set()
        self.current: str | None = None
        self.lock = threading.Lock()

    def record(self, service: str, operation: str, params: dict[str, Any]) -> None:
        function = self.current
        if function is None or service not in SERVICES:
            return
        with self.lock:
            self.calls[function] |= self._grants(service, operation, params)

    def _grants(self, service: str, operation: str, params: dict[str, Any]) -> set[Grant]:
        if service == "dynamodb":
            if operation == "TransactWriteItems":
                kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
                kinds["ConditionCheck"] = "ConditionCheckItem"
                return {
                    (f"dynamodb:{kinds[kind]}", self._id(spec["TableName"]), None)
                    for item in params["TransactItems"]
                    for kind, spec in item.items()
                }
            if operation == "TransactGetItems":
                return {
                    ("dynamodb:GetItem", self._id(i["Get"]["TableName"]), None)
                    for i in params["TransactItems"]
                }
            if operation in ("BatchWriteItem", "BatchGetItem"):
                return {(f"dynamodb:{operation}", self._id(table), None) for table in params["RequestItems"]}
            return {(f"dynamodb:{operation}", self._id(params["TableName"]), params.get("IndexName"))}
        if service == "sqs":
            return {(f"sqs:{operation}", self._id(params["QueueUrl"]), None)}
        if service == "kms":
            return {(f"kms:{operation}", self._id(params["KeyId"]), None)}
        return {(f"secretsmanager:{operation}", self._id(params["SecretId"]), None)}

    def _id(self, physical: str) -> str:
        return self.by_physical.get(physical, physical)


@pytest.fixture
def recorder(invoker: Any, local_resources: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    recording = Recorder(local_resources)
    container_for.cache_clear()  # every function starts as a new process would: no client, key or secret yet
    original_call = botocore.client.BaseClient._make_api_call
    original_invoke = invoker.invoke

    def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        recording.record(client.meta.service_model.service_name, operation, params)
        return original_call(client, operation, params)

    def invoke(logical_id: str, event: Any, env_overrides: Any = None) -> Any:
        parameters.clear_caches()  # each Lambda function has its own process, and so its own secret cache
        recording.invoked.add(logical_id)
        outer, recording.current = recording.current, logical_id
        try:
            return original_invoke(logical_id, event, env_overrides=env_overrides)
        finally:
            recording.current = outer

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)
    monkeypatch.setattr(invoker, "invoke", invoke)
    yield recording


class Feed:
    """The live feed's functions as they run: the WebSocket API's routes, invoked with the events it sends
    (devstack.websocket builds the same), and the stream consumers through their event sources. The
    management API the notifier posts to is the local WebSocket API's with no client connected: every
    connection it finds has gone (410), and is removed."""

    def __init__(
        self, invoker: Any, local_resources: Any, endpoint_url: str, gateway: WebSocketGateway
    ) -> None:
        self.invoker, self.gateway = invoker, gateway
        notifier = {"WEBSOCKET_ENDPOINT": gateway.management_url}
        pipeline = functools.partial(StreamPipeline, invoker, local_resources, endpoint_url)
        # Opened before anything is written: the mappings start at the streams' LATEST.
        self.streams = [
            pipeline("CacheInvalidatorFunction"),
            pipeline("NotifierFunction", table="SessionsTable", env=notifier),
            pipeline("NotifierFunction", table="MessagesTable", env=notifier),
        ]

    def _event(self, route_key: str, connection_id: str, **fields: Any) -> dict[str, Any]:
        now = time.time()
        context = {
            "routeKey": route_key,
            "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route_key, "MESSAGE"),
            "messageDirection": "IN",
            "stage": self.gateway.stage,
            "connectionId": connection_id,
            "apiId": self.gateway.api_id,
            "domainName": f"{self.gateway.host}:{self.gateway.port}",
            "requestId": secrets.token_hex(8),
            "extendedRequestId": secrets.token_hex(8),
            "requestTimeEpoch": int(now * 1000),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "identity": {"sourceIp": "127.0.0.1"},
        }
        return {"requestContext": context, "isBase64Encoded": False, **fields}

    def _route(self, route_key: str, event: dict[str, Any]) -> int:
        function = self.gateway.api.routes[route_key]
        return int(self.invoker.invoke(function, event)["statusCode"])

    def connect(self, *, key: str | None = None, token: str | None = None) -> str:
        """$connect with an API key (the project's events) or a session token (the session's)."""
        connection_id = secrets.token_urlsafe(10)
        headers = {"host": f"{self.gateway.host}:{self.gateway.port}", **({"x-api-key": key} if key else {})}
        fields: dict[str, Any] = {
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
        }
        if token:
            fields["queryStringParameters"] = {"token": token}
            fields["multiValueQueryStringParameters"] = {"token": [token]}
        assert self._route("$connect", self._event("$connect", connection_id, **fields)) == 200
        return connection_id

    def send(self, connection_id: str, body: str) -> None:
        event = self._event("$default", connection_id, body=body)
        event["requestContext"]["messageId"] = secrets.token_hex(6)
        assert self._route("$default", event) == 200

    def disconnect(self, connection_id: str) -> None:
        event = self._event("$disconnect", connection_id, headers={})
        event["requestContext"]["disconnectStatusCode"] = 1000
        assert self._route("$disconnect", event) == 200

    def drain(self) -> None:
        """Every change written since the streams were opened reaches their consumers."""
        for stream in self.streams:
            result = stream.drain()
            assert result.delivered and not result.discarded, result


@pytest.fixture
def feed(invoker: Any, local_resources: Any, moto_server: Any, template: Template) -> Iterator[Feed]:
    """Its streams open before the test writes anything."""
    gateway = WebSocketGateway(template, local_resources).start()
    try:
        yield Feed(invoker, local_resources, moto_server.url, gateway)
    finally:
        gateway.stop()


def drive(api: Api, project: Project, teardown: TeardownPipeline, redis_down: Any, feed: Feed) -> None:
    """Every path of the driven functions that needs a permission (see NOT_DRIVEN for the rest)."""
    key = project.api_key

    def ok(method: str, path: str, body: Any = None, **kw: Any) -> Any:
        reply = api.call(method, path, key=kw.pop("key", key), body=body, **kw)
        assert reply.status < 300, (method, path, reply.status, reply.body)
        return reply.body

    def mcp(session_id: str, method: str, params: Any = None, **kw: Any) -> Any:
        message = {"jsonrpc": "2.0", "id": 1, "method": method, **({"params": params} if params else {})}
        reply = ok(
            "POST",
            f"/v1/sessions/{session_id}/mcp",
            raw_body=json.dumps(message),
            headers={"mcp-protocol-version": "2025-06-18"},
            **kw,
        )
        assert "result" in reply, reply  # a JSON-RPC error is HTTP 200 too
        return reply["result"]

    ok("GET", "/openapi.json", key=None)
    feed.connect(key=key)  # the project's listener: gone by the time the notifier sends to it
    feed.disconnect(feed.connect(key=key))
    session = ok("POST", "/v1/sessions", {"user_id": "u1", "tag": "least-privilege", "config": {"a": 1}})
    sid = session["id"]
    ok("POST", "/v1/sessions", {"user_id": "u1", "tag": "least-privilege"})  # the tag's owner, read
    # Two live sessions: a listing reads their keys in one batch.
    quiet = ok("POST", "/v1/sessions", {"user_id": "u4"})
    ok("GET", f"/v1/sessions/{sid}")
    time.sleep(1.1)  # a reader checks the cache epoch at most once a second
    ok("GET", f"/v1/sessions/{sid}")
    ok("GET", "/v1/sessions")
    ok("GET", "/v1/sessions", query={"user_id": "u1"})
    ok("GET", "/v1/sessions", query={"changed_since": "2020-01-01T00:00:00Z"})
    ok("PATCH", f"/v1/sessions/{sid}", {"config": {"a": 2}, "expected_version": 1})
    with redis_down():  # a cache write that fails raises the cache epoch
        ok("PATCH", f"/v1/sessions/{sid}", {"metadata": {"m": 1}})
    token = ok("POST", f"/v1/sessions/{sid}/tokens")["token"]
    ok("GET", f"/v1/sessions/{sid}", key=None, token=token)  # the authorizer reads the token
    state = f"/v1/sessions/{sid}/agent-state"
    ok("PUT", state, {"agent_state": {"step": 1}, "expected_version": 0}, key=None, token=token)
    stale = api.call("PUT", state, key=key, body={"agent_state": "x", "expected_version": 0})
    assert stale.status == 409, stale  # a refused write reads the session: 404 or 409
    with redis_down():  # its cache write fails: the cache epoch is raised
        ok("PUT", state, {"agent_state": {"step": 2}, "expected_version": 1})
    feed.send(feed.connect(token=token), json.dumps({"action": "ping"}))  # the session's listener
    ok("POST", f"/v1/sessions/{sid}/execute", {"command": "echo hi"})
    # Idempotency keys: a first request (put, complete), its replay (the conditional put's old item), and a
    # request that failed (its record deleted) on each route that takes them.
    once = {"idempotency-key": f"lp-{sid}"}
    for _ in range(2):
        ok("POST", "/v1/sessions", {"user_id": "u4"}, headers=once)
        ok("POST", f"/v1/sessions/{sid}/execute", {"command": "echo once"}, headers=once)
    missing = "/v1/sessions/ses_01jc00000000000000000000000/execute"
    failed = {"idempotency-key": f"lp-missing-{sid}"}
    assert api.call("POST", missing, key=key, body={"command": "true"}, headers=failed).status == 404
    ok("PUT", "/v1/tools/echo_args", {
        "description": "Echo the arguments", "command": "printf '%s' \"$TOOL_ARGUMENTS\"",
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
    })  # fmt: skip
    ok("GET", "/v1/tools/echo_args")
    ok("GET", "/v1/tools")
    ok("GET", f"/v1/sessions/{sid}/tools", query={"query": "echo"})
    fresh = ok("POST", "/v1/sessions", {"user_id": "u3"})  # its first tool call creates its sandbox
    ok("POST", f"/v1/sessions/{fresh['id']}/tools/echo_args/call", {"arguments": {"text": "x"}})
    # MCP takes no Idempotency-Key; its tools/call is the REST call's, with a session token too.
    assert mcp(sid, "tools/list", key=None, token=token)["tools"]
    mcp_session = ok("POST", "/v1/sessions", {"user_id": "u3"})  # its first tool call creates its sandbox
    arguments = {"name": "echo_args", "arguments": {"text": "m"}}
    assert not mcp(mcp_session["id"], "tools/call", arguments).get("isError")
    assert not mcp(sid, "tools/call", arguments, key=None, token=token).get("isError")
    call_path = f"/v1/sessions/{fresh['id']}/tools/echo_args/call"
    for _ in range(2):
        ok("POST", call_path, {"arguments": {"text": "y"}}, headers={"idempotency-key": f"lp-call-{sid}"})
    missing_call = "/v1/sessions/ses_01jc00000000000000000000000/tools/echo_args/call"
    assert api.call("POST", missing_call, key=key, body={}, headers=failed).status == 404
    ok("DELETE", "/v1/tools/echo_args")
    appended = {"idempotency-key": f"lp-msg-{sid}"}
    for _ in range(2):  # the first append records activity; the second is its replay
        ok("POST", f"/v1/sessions/{quiet['id']}/messages", {"content": {"text": "hello"}}, headers=appended)
    missing_messages = "/v1/sessions/ses_01jc00000000000000000000000/messages"
    assert api.call("POST", missing_messages, key=key, body={"content": "x"}, headers=failed).status == 404
    ok("GET", f"/v1/sessions/{quiet['id']}/messages")
    ok("DELETE", f"/v1/sessions/{quiet['id']}")  # its teardown purges the message
    ok("DELETE", f"/v1/sessions/{sid}")
    other = ok("POST", "/v1/sessions", {"user_id": "u2"})
    with redis_down():  # the cache tombstone fails: the epoch again
        ok("DELETE", f"/v1/sessions/{other['id']}")
    teardown.purge()  # the sweeper re-enqueues what is still pending, then the teardown consumes it
    teardown.sweep(env={"TEARDOWN_GRACE_SECONDS": "0"})
    teardown.drain()
    feed.drain()


def test_each_function_is_granted_exactly_the_calls_it_makes(
    api: Api,
    project: Project,
    template: Template,
    teardown: TeardownPipeline,
    redis_down: Any,
    recorder: Recorder,
    feed: Feed,
) -> None:
    # Those without grants too: a call such a function makes is one without a grant.
    assert set(template.functions) <= set(DRIVEN), set(template.functions) - set(DRIVEN)
    drive(api, project, teardown, redis_down, feed)
    report = {}
    for function in DRIVEN:
        grants, calls = granted(template, function), recorder.calls.get(function, set())
        missing = calls - grants
        unused = {g for g in grants - calls if (function, g) not in NOT_DRIVEN}
        if missing or unused:
            report[function] = {
                "called but not granted": sorted(map(str, missing)),
                "granted, never called": sorted(map(str, unused)),
            }
    assert not report, json.dumps(report, indent=2)
    assert set(DRIVEN) <= recorder.invoked, set(DRIVEN) - recorder.invoked
