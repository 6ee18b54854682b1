"""What a first deploy would trip over and lint cannot see, checked on template.yaml itself.

- Every HTTP route's function stops before API Gateway gives up on it (HTTP API integrations time out at
  30 s, which also covers the invocation and a cold start's init), with room for the longest command.
- Subnets take their availability zones from parameters (empty = the region's first two zones).
- Every function logs to a log group the stack creates BEFORE it (LoggingConfig), outside /aws/lambda/.
- The alarms notify the optional AlarmTopicArn.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.template import LocalResources, Template, resolve
from session_service.domain.requests import MAX_COMMAND_TIMEOUT_S

HTTP_API_LIMIT_S = 30  # API Gateway HTTP API: maximum integration timeout
INIT_AND_INVOKE_ALLOWANCE_S = 3  # a cold start's init (about 1.5 s with the e2b layer) and the invocation
ATTACH_AND_RECORDS_S = 6  # sandbox create/resume (about 5 s) + the session and usage writes
AUTHORIZER_LIMIT_S = 10  # API Gateway waits this long for a Lambda authorizer


def _route_functions(template: Template) -> dict[str, Any]:
    functions = {route.function for route in template.routes}
    assert functions, "no HttpApi routes found in template.yaml"
    return {name: template.function(name) for name in sorted(functions)}


def _layers(template: Template, logical_id: str) -> list[str]:
    props = template.resources[logical_id]["Properties"]
    own = props.get("Layers") or []
    entries = [*(template.globals["Function"].get("Layers") or []), *own]
    return [entry["Ref"] for entry in entries if "Ref" in entry]  # conditional layers (tracing) left out


def test_every_http_route_function_stops_before_the_gateway_gives_up(template: Template) -> None:
    ceiling = HTTP_API_LIMIT_S - INIT_AND_INVOKE_ALLOWANCE_S
    too_long = {name: fn.timeout for name, fn in _route_functions(template).items() if fn.timeout > ceiling}
    assert not too_long, f"Timeout above {ceiling} s for HTTP routes: {too_long}"


def test_functions_that_run_commands_have_room_for_the_longest_one(template: Template) -> None:
    floor = MAX_COMMAND_TIMEOUT_S + ATTACH_AND_RECORDS_S
    sandbox_routes = {
        name: fn.timeout
        for name, fn in _route_functions(template).items()
        if "E2bLayer" in _layers(template, name)
    }
    assert {"ExecuteFunction", "CallToolFunction", "McpFunction"} <= sandbox_routes.keys()
    too_short = {name: t for name, t in sandbox_routes.items() if t < floor}
    assert not too_short, f"a {MAX_COMMAND_TIMEOUT_S} s command + attach needs {floor} s: {too_short}"


def test_the_authorizer_answers_within_api_gateways_limit(template: Template) -> None:
    api = template.http_api
    assert api is not None
    for authorizer in api.authorizers.values():
        assert template.function(authorizer.function_id).timeout < AUTHORIZER_LIMIT_S


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, ["us-east-1a", "us-east-1b"]),
        (
            {"AvailabilityZoneA": "us-east-1d", "AvailabilityZoneB": "us-east-1f"},
            ["us-east-1d", "us-east-1f"],
        ),
    ],
)
def test_subnets_take_their_zones_from_parameters(
    template: Template, parameters: dict[str, str], expected: list[str]
) -> None:
    assert template.parameters["AvailabilityZoneA"]["Default"] == ""
    assert template.parameters["AvailabilityZoneB"]["Default"] == ""
    resources = LocalResources.for_template(template, parameters)
    subnets = [logical_id for logical_id, _ in template.of_type("AWS::EC2::Subnet")]
    assert len(subnets) == 4
    zones = {
        logical_id: resolve(template.resources[logical_id]["Properties"]["AvailabilityZone"], resources)
        for logical_id in subnets
    }
    assert zones == {
        "PublicSubnetA": expected[0],
        "PrivateSubnetA": expected[0],
        "PublicSubnetB": expected[1],
        "PrivateSubnetB": expected[1],
    }


def test_every_function_logs_to_a_group_the_stack_makes_before_it(template: Template) -> None:
    for logical_id in template.functions:
        props = template.resources[logical_id]["Properties"]
        group = (props.get("LoggingConfig") or {}).get("LogGroup")
        assert isinstance(group, dict) and "Ref" in group, f"{logical_id}: no LoggingConfig.LogGroup !Ref"
        resource = template.resources[group["Ref"]]
        assert resource["Type"] == "AWS::Logs::LogGroup"
        assert resource["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
        name = resolve(resource["Properties"]["LogGroupName"], LocalResources.for_template(template))
        # Lambda auto-creates /aws/lambda/<function> when it writes there; a group of that name declared in
        # the stack can lose the race to it (or to a deleted stack's late logs) and fail the deploy.
        assert not name.startswith("/aws/lambda/"), f"{logical_id}: {name}"


@pytest.mark.parametrize("topic", ["", "arn:aws:sns:us-east-1:123456789012:paging"])
def test_alarms_notify_the_optional_topic(template: Template, topic: str) -> None:
    resources = LocalResources.for_template(template, {"AlarmTopicArn": topic})
    alarms = dict(template.of_type("AWS::CloudWatch::Alarm"))
    assert {"TeardownDeadLetterAlarm", "CacheInvalidatorLagAlarm"} <= alarms.keys()
    for logical_id, props in alarms.items():
        expected = [topic] if topic else None
        for key in ("AlarmActions", "OKActions"):
            actions = resolve({key: props.get(key)}, resources, logical_id).get(key)
            assert actions == expected, f"{logical_id}.{key}"
