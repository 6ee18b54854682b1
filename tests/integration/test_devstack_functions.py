"""The in-process invoker: each call runs with exactly its function's environment, restored afterwards;
calls with the same environment run concurrently, calls with different ones take turns."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from devstack.functions import InProcessInvoker, LocalEndpoints, function_env, local_overrides
from devstack.provision import provision
from devstack.services import MotoServer
from devstack.template import Template


@pytest.fixture(scope="module")
def sample_invoker(sample_app: Path, moto_server: MotoServer) -> InProcessInvoker:
    template = Template.load(sample_app / "template.yaml")
    resources = provision(template, endpoint_url=moto_server.url, stack_name="inproc")
    return InProcessInvoker(template, resources, local_overrides(LocalEndpoints(moto_server.url)))


def mode(name: str) -> dict[str, Any]:
    return {"pathParameters": {"mode": name}}


def test_the_function_environment_applies_during_the_call_only(
    sample_invoker: InProcessInvoker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "someones-real-account")
    monkeypatch.setenv("FROM_FUNCTION", "left over from the host")
    env = sample_invoker.invoke("EchoFunction", mode("env"))["env"]
    assert env["FROM_GLOBALS"] == "globals" and env["FROM_FUNCTION"] == "us-east-1-test"
    assert env["AWS_CONFIG_FILE"] == os.devnull and "AWS_PROFILE" not in env
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "EchoFunction"
    assert "FROM_GLOBALS" not in os.environ and "AWS_LAMBDA_FUNCTION_NAME" not in os.environ
    assert os.environ["AWS_PROFILE"] == "someones-real-account"
    assert os.environ["FROM_FUNCTION"] == "left over from the host"


def test_a_variable_only_another_function_has_is_hidden(sample_invoker: InProcessInvoker) -> None:
    """AuthorizerFunction has no FROM_FUNCTION; a value left in os.environ must not leak into it either."""
    assert "FROM_FUNCTION" not in sample_invoker.env_for("AuthorizerFunction")
    assert "FROM_FUNCTION" not in sample_invoker.invoke("SlowFunction", mode("env"))["env"]


def test_env_overrides_apply_per_call(sample_invoker: InProcessInvoker) -> None:
    result = sample_invoker.invoke("EchoFunction", mode("env"), env_overrides={"MARKER": "x"})
    assert result["env"]["MARKER"] == "x"
    assert "MARKER" not in sample_invoker.invoke("EchoFunction", mode("env"))["env"]


def test_fifty_calls_with_one_environment_run_concurrently(sample_invoker: InProcessInvoker) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda _: sample_invoker.invoke("EchoFunction", mode("sleep0.2")), range(50)))
    assert time.monotonic() - started < 50 * 0.2 / 5
    assert max(result["peak"] for result in results) >= 10


def test_calls_with_different_environments_take_turns(sample_invoker: InProcessInvoker) -> None:
    def call(index: int) -> dict[str, Any]:
        marker = "ab"[index % 2]
        result = sample_invoker.invoke("EchoFunction", mode("sleep0.02"), env_overrides={"MARKER": marker})
        return {**result, "expected": marker}

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, range(24)))
    for result in results:
        assert result["marker"] == result["marker_after"] == result["expected"]
    for first in results:
        for second in results:
            if first["expected"] != second["expected"]:
                assert first["ended"] <= second["started"] or second["ended"] <= first["started"]


def test_handlers_load_by_path_under_one_module_name_per_function(sample_invoker: InProcessInvoker) -> None:
    sample_invoker.invoke("EchoFunction", mode("plain"))
    sample_invoker.invoke("SlowFunction", mode("plain"))
    echo, slow = sys.modules["lambda_EchoFunction"], sys.modules["lambda_SlowFunction"]
    assert echo is not slow and echo.__file__ is not None and echo.__file__ == slow.__file__
    assert str(Path(echo.__file__).parent) not in sys.path


def test_exceptions_propagate_from_invoke_and_become_lambda_errors_in_execute(
    sample_invoker: InProcessInvoker,
) -> None:
    with pytest.raises(ValueError, match="the handler failed"):
        sample_invoker.invoke("EchoFunction", mode("raise"))
    invocation = sample_invoker.execute("EchoFunction", mode("raise"))
    assert invocation.error is not None and invocation.error["errorType"] == "ValueError"
    assert sample_invoker.execute("EchoFunction", mode("plain")).result == {"hello": "world"}


def test_the_context_object(sample_invoker: InProcessInvoker) -> None:
    context = sample_invoker.invoke("SlowFunction", mode("context"))
    assert context["function_name"] == "SlowFunction" and context["memory"] == 256
    assert 0 < context["remaining"] <= 1000


def test_local_overrides_win_over_the_template(
    template: Template, local_resources: Any, local_endpoints: Any
) -> None:
    overrides = local_overrides(local_endpoints)
    for logical_id, function in template.functions.items():
        env = function_env(template, logical_id, local_resources, overrides)
        assert {name: env[name] for name in overrides} == overrides
        if "REDIS_TLS" in function.variables:
            assert function.variables["REDIS_TLS"] == "true" and env["REDIS_TLS"] == "false"
