"""The dev stack's reading of template.yaml: short-form tags, the intrinsic resolver, and the model of the
real template (functions, routes, authorizer) that the gateway and the runtimes are built from."""

from __future__ import annotations

import pytest

from devstack.functions import function_env
from devstack.template import LocalResources, Template, TemplateError, load_yaml, resolve, resolve_string


def resources_for(text: str, **parameters: object) -> tuple[Template, LocalResources]:
    template = Template.from_text(text)
    resources = LocalResources.for_template(template, parameters, region="eu-west-1", stack_name="local")
    resources.add("Table", "AWS::DynamoDB::Table", "local-Table", Arn="arn:aws:dynamodb:eu-west-1:1:table/t")
    resources.add("Cache", "AWS::ElastiCache::ServerlessCache", "cache", **{"Endpoint.Address": "127.0.0.1"})
    return template, resources


SNIPPET = """\
Parameters:
  Stage: {Type: String, Default: dev}
  Ttl: {Type: Number, Default: 30}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
Mappings:
  Sizes: {dev: {memory: 512}}
Resources: {}
Values:
  ref_parameter: !Ref Stage
  ref_number: !Ref Ttl
  ref_resource: !Ref Table
  pseudo: !Sub "${AWS::Region}/${AWS::AccountId}/${AWS::StackName}/${AWS::Partition}/${AWS::URLSuffix}"
  getatt_dotted: !GetAtt Table.Arn
  getatt_list: !GetAtt [Table, Arn]
  getatt_nested: !GetAtt Cache.Endpoint.Address
  sub_resource: !Sub "${Table.Arn}/index/by_user"
  sub_literal: !Sub "${!NotAVariable}-${Stage}"
  sub_list: !Sub ["${Name}-${Stage}", {Name: !Ref Table}]
  join: !Join ["-", [a, !Ref Stage, !Select [1, [x, y, z]]]]
  azs: !Select [0, !GetAZs ""]
  split: !Split [",", "a,b"]
  if_false: !If [IsProd, big, small]
  if_true: !If [NotProd, kept, dropped]
  in_map: !FindInMap [Sizes, !Ref Stage, memory]
  no_value: {Keep: 1, Drop: !Ref AWS::NoValue}
"""


def test_short_form_tags_become_long_form() -> None:
    document = load_yaml(SNIPPET)
    values = document["Values"]
    assert values["ref_parameter"] == {"Ref": "Stage"}
    assert values["getatt_dotted"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert values["getatt_nested"] == {"Fn::GetAtt": ["Cache", "Endpoint.Address"]}
    assert values["sub_list"] == {"Fn::Sub": ["${Name}-${Stage}", {"Name": {"Ref": "Table"}}]}
    assert document["Conditions"]["NotProd"] == {"Fn::Not": [{"Condition": "IsProd"}]}


def test_intrinsics_resolve_against_local_resources() -> None:
    template, resources = resources_for(SNIPPET)
    values = resolve(template.document["Values"], resources)
    assert values == {
        "ref_parameter": "dev",
        "ref_number": 30,
        "ref_resource": "local-Table",
        "pseudo": "eu-west-1/123456789012/local/aws/amazonaws.com",
        "getatt_dotted": "arn:aws:dynamodb:eu-west-1:1:table/t",
        "getatt_list": "arn:aws:dynamodb:eu-west-1:1:table/t",
        "getatt_nested": "127.0.0.1",
        "sub_resource": "arn:aws:dynamodb:eu-west-1:1:table/t/index/by_user",
        "sub_literal": "${NotAVariable}-dev",
        "sub_list": "local-Table-dev",
        "join": "a-dev-y",
        "azs": "eu-west-1a",
        "split": ["a", "b"],
        "if_false": "small",
        "if_true": "kept",
        "in_map": 512,
        "no_value": {"Keep": 1},
    }


def test_parameter_overrides_win_over_defaults() -> None:
    _, resources = resources_for(SNIPPET, Stage="prod")
    assert resolve({"Fn::If": ["IsProd", "big", "small"]}, resources) == "big"


def test_environment_values_are_strings_as_lambda_sees_them() -> None:
    _, resources = resources_for(SNIPPET)
    assert resolve_string({"Ref": "Ttl"}, resources, "X") == "30"
    assert resolve_string(True, resources, "X") == "true"
    with pytest.raises(TemplateError, match="X: resolves to"):
        resolve_string(["a"], resources, "X")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"Ref": "Missing"}, r"Fn.VAR: !Ref Missing has no local value"),
        ({"Fn::GetAtt": ["Table", "StreamArn"]}, r"Fn.VAR: !GetAtt Table.StreamArn .*offers: Arn"),
        (
            {"Fn::GetAtt": ["Vpc", "CidrBlock"]},
            r"Fn.VAR: !GetAtt Vpc.CidrBlock: Vpc has no local counterpart",
        ),
        ({"Fn::Cidr": ["10.0.0.0/16", 4, 8]}, r"Fn.VAR: Fn::Cidr is not supported"),
        ({"Fn::Sub": "${Nope}"}, r"Fn.VAR: !Ref Nope"),
    ],
)
def test_unresolvable_values_name_where_they_are(value: object, message: str) -> None:
    _, resources = resources_for(SNIPPET)
    with pytest.raises(TemplateError, match=message):
        resolve(value, resources, "Fn.VAR")


def test_function_env_names_the_function_and_variable_it_cannot_resolve() -> None:
    template, resources = resources_for(
        """\
Resources:
  Broken:
    Type: AWS::Serverless::Function
    Properties: {CodeUri: x/, Handler: app.handler, Environment: {Variables: {QUEUE_URL: !Ref NoQueue}}}
"""
    )
    with pytest.raises(TemplateError, match=r"Broken\.Environment\.Variables\.QUEUE_URL: !Ref NoQueue"):
        function_env(template, "Broken", resources)


def test_globals_merge_under_function_properties() -> None:
    template = Template.from_text(
        """\
Globals:
  Function: {Handler: app.handler, Timeout: 9, Environment: {Variables: {A: g, B: g}}}
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: f/
      MemorySize: 256
      Environment: {Variables: {B: f, C: f}}
      Events:
        Q:
          Type: SQS
          Properties: {Queue: !GetAtt Q.Arn, BatchSize: 5, FunctionResponseTypes: [ReportBatchItemFailures]}
        S: {Type: Schedule, Properties: {Schedule: rate(5 minutes)}}
""",
        root="/srv/app",
    )
    function = template.function("F")
    assert function.variables == {"A": "g", "B": "f", "C": "f"}
    assert (function.timeout, function.memory_size, function.handler) == (9, 256, "app.handler")
    assert str(function.code_uri) == "/srv/app/f"
    (sqs,) = function.sqs
    assert (sqs.queue_id, sqs.batch_size, sqs.function_response_types) == (
        "Q",
        5,
        ("ReportBatchItemFailures",),
    )
    assert function.schedules[0].schedule == "rate(5 minutes)"


# --- the real template.yaml ------------------------------------------------------------------------------


def test_every_function_has_code_and_a_handler_on_disk(template: Template) -> None:
    functions = template.functions
    assert "AuthorizerFunction" in functions
    for function in functions.values():
        module = function.handler.rpartition(".")[0]
        assert (function.code_uri / f"{module}.py").is_file(), function.logical_id


def test_routes_and_the_authorizer_are_read_from_the_template(template: Template) -> None:
    routes = {(route.method, route.path): route.function for route in template.routes}
    assert routes[("POST", "/v1/sessions")] == "CreateSessionFunction"
    assert routes[("GET", "/v1/sessions/{session_id}")] == "GetSessionFunction"
    assert routes[("PATCH", "/v1/sessions/{session_id}")] == "UpdateSessionFunction"
    api = template.http_api
    assert api is not None and api.default_authorizer is not None
    authorizer = api.authorizers[api.default_authorizer]
    assert authorizer.function_id == "AuthorizerFunction"
    assert authorizer.identity_headers == ("x-api-key",)
    assert authorizer.enable_simple_responses is True


def test_every_function_environment_resolves_locally(
    template: Template, local_resources: LocalResources
) -> None:
    for logical_id, function in template.functions.items():
        env = function_env(template, logical_id, local_resources, {"REDIS_TLS": "false"})
        assert set(function.variables) <= set(env), logical_id
        assert env["AWS_LAMBDA_FUNCTION_NAME"] == logical_id
        if "REDIS_HOST" in env:
            assert env["REDIS_HOST"] == "127.0.0.1" and env["REDIS_TLS"] == "false"
