"""The local API Gateway over real HTTP, with the sample app's functions in worker processes: payload 2.0
events, response mapping, the REQUEST authorizer's status codes, and Lambda's timeout/crash behaviour."""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.functions import LocalEndpoints, ProcessRuntime, local_overrides
from devstack.gateway import MAX_BODY_BYTES, Gateway
from devstack.provision import provision
from devstack.services import MotoServer
from devstack.template import Template


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Sample:
    gateway: Gateway
    runtime: ProcessRuntime
    calls: Path
    moto_url: str

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = "k1",
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        stage: str = "/test",
    ) -> Reply:
        connection = http.client.HTTPConnection(self.gateway.host, self.gateway.port, timeout=30)
        try:
            connection.putrequest(method, stage + path)
            all_headers = [*(headers or []), *([("x-api-key", key)] if key is not None else [])]
            if body is not None:
                all_headers.append(("content-length", str(len(body))))
            for name, value in all_headers:
                connection.putheader(name, value)
            connection.endheaders(body)
            response = connection.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            connection.close()

    def authorizer_events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.calls.read_text().splitlines()]

    def authorizer_calls(self) -> list[str]:
        """The identity (x-api-key) of each authorizer invocation so far."""
        return [event["identitySource"][0] for event in self.authorizer_events()]


@pytest.fixture(scope="module")
def sample(
    sample_app: Path, moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sample]:
    calls = tmp_path_factory.mktemp("calls") / "authorizer-calls.log"
    calls.touch()
    template = Template.load(sample_app / "template.yaml")
    resources = provision(
        template, endpoint_url=moto_server.url, stack_name="sample", parameters={"CallsFile": str(calls)}
    )
    runtime = ProcessRuntime(
        template, resources, local_overrides(LocalEndpoints(moto_server.url)), max_workers=4
    )
    gateway = Gateway(template, resources, runtime).start()
    try:
        yield Sample(gateway, runtime, calls, moto_server.url)
    finally:
        gateway.stop()
        runtime.stop()


# --- events -----------------------------------------------------------------------------------------------


def test_the_route_receives_a_payload_2_0_event(sample: Sample) -> None:
    reply = sample.request(
        "GET",
        "/echo/event?b=2&a=1&a=3",
        headers=[("X-Multi", "1"), ("X-Multi", "2"), ("Cookie", "c1=1; c2=2"), ("User-Agent", "pytest")],
    )
    assert reply.status == 200
    event = reply.json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /echo/{mode}"
    assert event["rawPath"] == "/test/echo/event"
    assert event["rawQueryString"] == "b=2&a=1&a=3"
    assert event["queryStringParameters"] == {"b": "2", "a": "1,3"}
    assert event["pathParameters"] == {"mode": "event"}
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert event["headers"]["x-multi"] == "1,2" and event["headers"]["x-api-key"] == "k1"
    assert "cookie" not in event["headers"] and "X-Multi" not in event["headers"]
    assert event["isBase64Encoded"] is False and "body" not in event
    context = event["requestContext"]
    assert context["stage"] == "test" and context["routeKey"] == "ANY /echo/{mode}"
    assert context["http"] == {
        "method": "GET",
        "path": "/test/echo/event",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "pytest",
    }
    assert context["authorizer"] == {"lambda": {"project_id": "prj-k1", "key": "k1"}}
    assert context["requestId"] and isinstance(context["timeEpoch"], int)
    assert context["accountId"] == "123456789012" and context["apiId"]


def test_text_bodies_arrive_as_text_and_binary_bodies_as_base64(sample: Sample) -> None:
    text = sample.request(
        "POST", "/echo/event", headers=[("content-type", "application/json")], body=b'{"a": 1}'
    )
    assert text.json()["body"] == '{"a": 1}' and text.json()["isBase64Encoded"] is False
    binary = bytes(range(256))
    raw = sample.request(
        "PUT", "/echo/event", headers=[("content-type", "application/octet-stream")], body=binary
    )
    event = raw.json()
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == binary


def test_greedy_paths_and_routes_without_an_authorizer(sample: Sample) -> None:
    files = sample.request("GET", "/files/a/b/c.txt?mode=event").json()
    assert files["pathParameters"] == {"proxy": "a/b/c.txt"} and files["routeKey"] == "GET /files/{proxy+}"
    before = len(sample.authorizer_calls())
    public = sample.request("GET", "/public?mode=event", key=None)
    assert public.status == 200 and "authorizer" not in public.json()["requestContext"]
    assert len(sample.authorizer_calls()) == before


@pytest.mark.parametrize(
    ("method", "path", "stage"),
    [
        ("GET", "/nope", "/test"),
        ("POST", "/public", "/test"),
        ("GET", "/echo/event", "/prod"),
        ("GET", "/echo", ""),
        ("TRACE", "/public", "/test"),  # a method http.server has no handler for: not its 501 page
    ],
)
def test_unknown_routes_are_404(sample: Sample, method: str, path: str, stage: str) -> None:
    reply = sample.request(method, path, stage=stage)
    assert (reply.status, reply.json()) == (404, {"message": "Not Found"})


def test_bodies_over_10_mb_are_413(sample: Sample) -> None:
    reply = sample.request("POST", "/echo/event", body=b"x" * (MAX_BODY_BYTES + 1))
    assert (reply.status, reply.json()) == (413, {"message": "Request Entity Too Large"})


# --- responses --------------------------------------------------------------------------------------------


def test_a_result_without_status_code_is_200_json(sample: Sample) -> None:
    plain = sample.request("GET", "/echo/plain")
    assert (plain.status, plain.headers["content-type"], plain.json()) == (
        200,
        "application/json",
        {"hello": "world"},
    )
    string = sample.request("GET", "/echo/string")
    assert (string.status, string.json()) == (200, "just a string")


def test_status_headers_cookies_and_base64_bodies_are_mapped(sample: Sample) -> None:
    made = sample.request("GET", "/echo/cookies")
    assert made.status == 201 and made.body == b"made"
    assert made.headers.get_all("set-cookie") == ["a=1", "b=2; Path=/"]
    assert made.headers.get_all("x-multi") == ["1", "2"] and made.headers["x-single"] == "one"
    assert made.headers["apigw-requestid"]
    binary = sample.request("GET", "/echo/binary")
    assert binary.body == bytes(range(256)) and binary.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize("mode", ["raise", "malformed", "crash"])
def test_function_failures_are_500_and_the_function_keeps_serving(sample: Sample, mode: str) -> None:
    reply = sample.request("GET", f"/echo/{mode}")
    assert (reply.status, reply.json()) == (500, {"message": "Internal Server Error"})
    assert sample.request("GET", "/echo/plain").status == 200


# --- the authorizer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, ""], ids=["missing", "empty"])
def test_no_identity_header_is_401_without_calling_the_authorizer(sample: Sample, key: str | None) -> None:
    before = len(sample.authorizer_calls())
    reply = sample.request("GET", "/echo/plain", key=key)
    assert (reply.status, reply.json()) == (401, {"message": "Unauthorized"})
    assert len(sample.authorizer_calls()) == before


def test_is_authorized_false_is_403_and_the_route_does_not_run(sample: Sample) -> None:
    reply = sample.request("GET", "/echo/crash", key="deny")
    assert (reply.status, reply.json()) == (403, {"message": "Forbidden"})
    assert sample.authorizer_calls()[-1] == "deny"


def test_an_authorizer_error_is_500(sample: Sample) -> None:
    reply = sample.request("GET", "/echo/plain", key="boom")
    assert (reply.status, reply.json()) == (500, {"message": "Internal Server Error"})


def test_the_authorizer_gets_a_request_event_v2(sample: Sample) -> None:
    assert sample.request("GET", "/echo/event?x=1", key="k9").status == 200
    event = sample.authorizer_events()[-1]
    assert (event["version"], event["type"], event["identitySource"]) == ("2.0", "REQUEST", ["k9"])
    assert (
        event["routeArn"]
        == f"arn:aws:execute-api:us-east-1:123456789012:{sample.gateway.api_id}/test/GET/echo/event"
    )
    assert event["routeKey"] == "ANY /echo/{mode}" and event["rawPath"] == "/test/echo/event"
    assert event["headers"]["x-api-key"] == "k9" and event["queryStringParameters"] == {"x": "1"}
    assert event["pathParameters"] == {"mode": "event"}
    assert event["requestContext"]["http"]["method"] == "GET" and "authorizer" not in event["requestContext"]


def test_decisions_are_cached_per_key_only_when_asked(sample: Sample) -> None:
    cached = Gateway(
        sample.gateway.template, sample.gateway.resources, sample.runtime, authorizer_cache=True
    ).start()
    try:
        before = len(sample.authorizer_calls())
        for _ in range(3):
            connection = http.client.HTTPConnection(cached.host, cached.port, timeout=10)
            connection.request("GET", "/test/echo/plain", headers={"x-api-key": "cached-key"})
            assert connection.getresponse().status == 200
            connection.close()
        assert sample.authorizer_calls()[before:] == ["cached-key"]
    finally:
        cached.stop()


# --- the runtime: workers, timeouts, crashes, concurrency ---------------------------------------------------


def test_a_function_runs_in_its_own_environment_and_stays_warm(sample: Sample) -> None:
    first, second = (sample.request("GET", "/echo/env").json() for _ in range(2))
    assert first["pid"] == second["pid"]  # warm: the same execution environment
    env = first["env"]
    assert env["FROM_GLOBALS"] == "globals" and env["FROM_FUNCTION"] == "us-east-1-test"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "EchoFunction" and env["AWS_ENDPOINT_URL"] == sample.moto_url
    assert env["REDIS_TLS"] == "false" and env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert "PYTEST_CURRENT_TEST" not in env and "HOME" not in env  # nothing leaks from the host process


def test_the_context_object_is_lambda_like(sample: Sample) -> None:
    context = sample.request("GET", "/echo/context").json()
    assert context["function_name"] == "EchoFunction" and context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"] == "arn:aws:lambda:us-east-1:123456789012:function:EchoFunction"
    assert context["memory"] == 256 and context["log_group"] == "/aws/lambda/EchoFunction"
    assert 4000 < context["remaining"] <= 5000 and len(context["request_id"]) == 36


def test_a_response_over_lambdas_limit_fails_as_in_the_cloud(sample: Sample) -> None:
    """Lambda refuses a synchronous response over 6,291,556 bytes (Function.ResponseSizeTooLarge) and an
    HTTP API answers 500: here too, instead of delivering it."""
    invocation = sample.runtime.execute("EchoFunction", {"pathParameters": {"mode": "huge"}})
    assert not invocation.ok and invocation.error["errorType"] == "Function.ResponseSizeTooLarge"
    assert "6291556" in invocation.error["errorMessage"]
    reply = sample.request("GET", "/echo/huge")
    assert (reply.status, reply.json()) == (500, {"message": "Internal Server Error"})
    assert sample.request("GET", "/echo/plain").status == 200  # the function keeps serving


def test_the_timeout_kills_the_worker_and_the_next_call_gets_a_new_one(sample: Sample) -> None:
    started = time.monotonic()
    invocation = sample.runtime.execute("SlowFunction", {"pathParameters": {"mode": "sleep5"}})
    elapsed = time.monotonic() - started
    assert invocation.error is not None and invocation.error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in invocation.error["errorMessage"]
    assert elapsed < 3
    reply = sample.request("GET", "/slow/sleep3")
    assert (reply.status, reply.json()) == (500, {"message": "Internal Server Error"})
    assert sample.request("GET", "/slow/sleep0").status == 200


def test_a_crash_is_a_runtime_exit_error(sample: Sample) -> None:
    invocation = sample.runtime.execute("EchoFunction", {"pathParameters": {"mode": "crash"}})
    assert invocation.error is not None and invocation.error["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in invocation.error["errorMessage"]
    raised = sample.runtime.execute("EchoFunction", {"pathParameters": {"mode": "raise"}})
    assert raised.error is not None
    assert (raised.error["errorType"], raised.error["errorMessage"]) == ("ValueError", "the handler failed")
    assert any("app.py" in line for line in raised.error["stackTrace"])


def test_concurrent_requests_run_concurrently_up_to_the_pool_size(sample: Sample) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(lambda _: sample.request("GET", "/echo/sleep0.6"), range(4)))
    elapsed = time.monotonic() - started
    assert all(reply.status == 200 for reply in replies)
    assert len({reply.json()["pid"] for reply in replies}) == 4
    assert elapsed < 4 * 0.6
    assert sample.runtime.pool("EchoFunction").size <= 4
