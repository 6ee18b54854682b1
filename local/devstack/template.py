"""template.yaml as the dev stack sees it: the functions, the HTTP API's routes and authorizer, the tables,
queues and secrets, and a resolver for the intrinsic functions the local stack must evaluate.

The template is the single source of truth: the local stack never repeats a table schema, a route or an
environment variable, so what runs locally cannot drift from what is deployed.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FUNCTION = "AWS::Serverless::Function"
HTTP_API = "AWS::Serverless::HttpApi"
WEBSOCKET_API = "AWS::Serverless::WebSocketApi"
EVENT_BUS = "AWS::Events::EventBus"
KMS_KEY = "AWS::KMS::Key"
TABLE_TYPES = ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable")
QUEUE = "AWS::SQS::Queue"
SECRET = "AWS::SecretsManager::Secret"  # noqa: S105 - a type name
CACHE_TYPES = (
    "AWS::ElastiCache::ServerlessCache",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::ElastiCache::CacheCluster",
)

# SAM's defaults for a function property that neither the function nor Globals sets.
DEFAULT_TIMEOUT = 3
DEFAULT_MEMORY = 128
DEFAULT_SQS_BATCH = 10


class TemplateError(ValueError):
    """The template asks for something the local stack cannot do; the message names where."""


# --------------------------------------------------------------------------------------------------------
# Loading: the CloudFormation short forms (!Ref, !GetAtt, !Sub, ...) become their long forms.
# --------------------------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """A safe loader that also knows the CloudFormation tags."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - YAML has no other node kinds
        raise TemplateError(f"unsupported node for !{tag_suffix}")
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_yaml(text: str) -> dict[str, Any]:
    """Parse CloudFormation YAML (short-form tags included) into plain dicts and lists."""
    document = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict):
        raise TemplateError("a template must be a mapping")
    return document


# --------------------------------------------------------------------------------------------------------
# The model the dev stack uses.
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRoute:
    """One HttpApi event: `method` is upper case or "ANY"; `path` is the template's (`/v1/x/{id}`)."""

    function: str
    event: str
    method: str
    path: str
    api: str | None
    authorizer: str | None  # None: the API's default; "NONE": no authorizer


@dataclass(frozen=True)
class SqsSource:
    function: str
    event: str
    queue: Any  # usually {"Fn::GetAtt": [QueueLogicalId, "Arn"]}
    batch_size: int
    function_response_types: tuple[str, ...]
    maximum_batching_window: int
    enabled: bool

    @property
    def queue_id(self) -> str | None:
        """The queue's logical id when the event refers to a queue of this template."""
        return referenced_resource(self.queue)


@dataclass(frozen=True)
class StreamSource:
    """A `Type: DynamoDB` event: the table's stream → the function, as Lambda's event source mapping."""

    function: str
    event: str
    stream: Any  # usually {"Fn::GetAtt": [TableLogicalId, "StreamArn"]}
    starting_position: str
    batch_size: int
    function_response_types: tuple[str, ...]
    bisect_on_error: bool
    maximum_retry_attempts: int  # -1: until the record is too old
    maximum_record_age_seconds: int  # -1: no limit
    enabled: bool

    @property
    def table_id(self) -> str | None:
        return referenced_resource(self.stream)


@dataclass(frozen=True)
class ScheduleSource:
    function: str
    event: str
    schedule: str  # "rate(5 minutes)" or "cron(...)"
    enabled: bool
    input: str | None


@dataclass(frozen=True)
class Function:
    logical_id: str
    code_uri: Path
    handler: str
    runtime: str | None
    timeout: int
    memory_size: int
    # Globals' variables, then the function's own (unresolved: may contain intrinsics).
    variables: dict[str, Any]
    routes: tuple[HttpRoute, ...] = ()
    sqs: tuple[SqsSource, ...] = ()
    schedules: tuple[ScheduleSource, ...] = ()
    streams: tuple[StreamSource, ...] = ()


@dataclass(frozen=True)
class Authorizer:
    name: str
    function_arn: Any  # usually {"Fn::GetAtt": [FunctionLogicalId, "Arn"]}
    identity_headers: tuple[str, ...]
    enable_simple_responses: bool
    payload_format_version: str
    reauthorize_every: Any  # seconds (may be a !Ref); 0 disables API Gateway's decision cache

    @property
    def function_id(self) -> str:
        resource = referenced_resource(self.function_arn)
        if resource is None:
            raise TemplateError(
                f"authorizer {self.name}: FunctionArn must be !GetAtt <Function>.Arn or !Ref <Function>.Alias"
            )
        return resource


@dataclass(frozen=True)
class HttpApi:
    logical_id: str
    stage_name: Any  # may be a !Ref; "$default" when unset
    authorizers: dict[str, Authorizer]
    default_authorizer: str | None

    def authorizer_for(self, route: HttpRoute) -> Authorizer | None:
        name = route.authorizer or self.default_authorizer
        if name is None or name == "NONE":
            return None
        try:
            return self.authorizers[name]
        except KeyError:
            raise TemplateError(f"{route.function}.{route.event}: unknown authorizer {name!r}") from None


@dataclass(frozen=True)
class WebSocketApi:
    logical_id: str
    stage_name: Any  # may be a !Ref
    routes: dict[str, str]  # "$connect" / "$disconnect" / "$default" / action → function logical id


def _method(value: Any) -> str:
    method = str(value).upper()
    return "ANY" if method == "X-AMAZON-APIGATEWAY-ANY-METHOD" else method


def referenced_resource(value: Any) -> str | None:
    """The logical id in `!Ref X` / `!GetAtt X.Attr`, else None. SAM's `!Ref X.Alias` (the function's
    AutoPublishAlias) and `!Ref X.Version` name the function X: locally there is only its one version."""
    if isinstance(value, dict) and len(value) == 1:
        if "Ref" in value and isinstance(value["Ref"], str):
            name, _, suffix = value["Ref"].partition(".")
            return name if suffix in ("Alias", "Version") else value["Ref"]
        if "Fn::GetAtt" in value and isinstance(value["Fn::GetAtt"], list):
            return str(value["Fn::GetAtt"][0])
    return None


class Template:
    """A parsed template.yaml; paths (CodeUri) are resolved relative to the template's directory."""

    def __init__(self, document: dict[str, Any], root: Path) -> None:
        self.document = document
        self.root = root
        self.resources: dict[str, dict[str, Any]] = document.get("Resources") or {}
        self.parameters: dict[str, dict[str, Any]] = document.get("Parameters") or {}
        self.conditions: dict[str, Any] = document.get("Conditions") or {}
        self.mappings: dict[str, Any] = document.get("Mappings") or {}
        self.globals: dict[str, Any] = document.get("Globals") or {}

    @classmethod
    def load(cls, path: str | Path) -> Template:
        path = Path(path).resolve()
        return cls(load_yaml(path.read_text()), path.parent)

    @classmethod
    def from_text(cls, text: str, root: str | Path = ".") -> Template:
        return cls(load_yaml(text), Path(root).resolve())

    # -- resources by type ---------------------------------------------------------------------------------

    def of_type(self, *types: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if resource.get("Type") in types:
                yield logical_id, resource.get("Properties") or {}

    def resource_type(self, logical_id: str) -> str:
        try:
            return str(self.resources[logical_id]["Type"])
        except KeyError:
            raise TemplateError(f"no resource {logical_id!r} in the template") from None

    @property
    def tables(self) -> dict[str, dict[str, Any]]:
        return dict(self.of_type(*TABLE_TYPES))

    @property
    def queues(self) -> dict[str, dict[str, Any]]:
        return dict(self.of_type(QUEUE))

    @property
    def secrets(self) -> dict[str, dict[str, Any]]:
        return dict(self.of_type(SECRET))

    @property
    def caches(self) -> dict[str, dict[str, Any]]:
        return dict(self.of_type(*CACHE_TYPES))

    def parameter_defaults(self) -> dict[str, Any]:
        return {name: spec["Default"] for name, spec in self.parameters.items() if "Default" in spec}

    # -- functions -----------------------------------------------------------------------------------------

    @property
    def functions(self) -> dict[str, Function]:
        return {logical_id: self.function(logical_id) for logical_id, _ in self.of_type(FUNCTION)}

    def function(self, logical_id: str) -> Function:
        if self.resource_type(logical_id) != FUNCTION:
            raise TemplateError(f"{logical_id} is not an {FUNCTION}")
        props = self.resources[logical_id].get("Properties") or {}
        defaults = self.globals.get("Function") or {}

        def prop(name: str, default: Any = None) -> Any:
            return props.get(name, defaults.get(name, default))

        code_uri = prop("CodeUri")
        if not isinstance(code_uri, str):
            raise TemplateError(f"{logical_id}: CodeUri must be a local path, not {code_uri!r}")
        handler = prop("Handler")
        if not isinstance(handler, str):
            raise TemplateError(f"{logical_id}: Handler is missing")
        variables: dict[str, Any] = {}
        for source in (defaults, props):
            variables.update(((source.get("Environment") or {}).get("Variables")) or {})
        routes: list[HttpRoute] = []
        sqs: list[SqsSource] = []
        schedules: list[ScheduleSource] = []
        streams: list[StreamSource] = []
        for event_name, event in (props.get("Events") or {}).items():
            kind, spec = event.get("Type"), event.get("Properties") or {}
            if kind == "HttpApi":
                routes.append(
                    HttpRoute(
                        function=logical_id,
                        event=event_name,
                        method=_method(spec.get("Method", "ANY")),
                        path=str(spec.get("Path", "$default")),
                        api=referenced_resource(spec.get("ApiId")),
                        authorizer=(spec.get("Auth") or {}).get("Authorizer"),
                    )
                )
            elif kind == "SQS":
                sqs.append(
                    SqsSource(
                        function=logical_id,
                        event=event_name,
                        queue=spec.get("Queue"),
                        batch_size=int(spec.get("BatchSize", DEFAULT_SQS_BATCH)),
                        function_response_types=tuple(spec.get("FunctionResponseTypes") or ()),
                        maximum_batching_window=int(spec.get("MaximumBatchingWindowInSeconds", 0)),
                        enabled=bool(spec.get("Enabled", True)),
                    )
                )
            elif kind == "DynamoDB":
                streams.append(
                    StreamSource(
                        function=logical_id,
                        event=event_name,
                        stream=spec.get("Stream"),
                        starting_position=str(spec.get("StartingPosition", "LATEST")),
                        batch_size=int(spec.get("BatchSize", 100)),
                        function_response_types=tuple(spec.get("FunctionResponseTypes") or ()),
                        bisect_on_error=bool(spec.get("BisectBatchOnFunctionError", False)),
                        maximum_retry_attempts=int(spec.get("MaximumRetryAttempts", -1)),
                        maximum_record_age_seconds=int(spec.get("MaximumRecordAgeInSeconds", -1)),
                        enabled=bool(spec.get("Enabled", True)),
                    )
                )
            elif kind in ("Schedule", "ScheduleV2"):
                schedules.append(
                    ScheduleSource(
                        function=logical_id,
                        event=event_name,
                        schedule=str(spec.get("Schedule") or spec.get("ScheduleExpression")),
                        enabled=str(spec.get("Enabled", spec.get("State", "ENABLED"))).upper()
                        in ("TRUE", "ENABLED"),
                        input=spec.get("Input"),
                    )
                )
        return Function(
            logical_id=logical_id,
            code_uri=(self.root / code_uri).resolve(),
            handler=handler,
            runtime=prop("Runtime"),
            timeout=int(prop("Timeout", DEFAULT_TIMEOUT)),
            memory_size=int(prop("MemorySize", DEFAULT_MEMORY)),
            variables=variables,
            routes=tuple(routes),
            sqs=tuple(sqs),
            schedules=tuple(schedules),
            streams=tuple(streams),
        )

    @property
    def routes(self) -> list[HttpRoute]:
        return [route for function in self.functions.values() for route in function.routes]

    # -- the WebSocket API ---------------------------------------------------------------------------------

    @property
    def websocket_api(self) -> WebSocketApi | None:
        """The (single) AWS::Serverless::WebSocketApi: its stage and route key → function."""
        apis = list(self.of_type(WEBSOCKET_API))
        if not apis:
            return None
        if len(apis) > 1:
            raise TemplateError("the dev stack serves one WebSocketApi; this template has " + str(len(apis)))
        logical_id, props = apis[0]
        routes: dict[str, str] = {}
        for route_key, spec in (props.get("Routes") or {}).items():
            function = referenced_resource((spec or {}).get("FunctionArn"))
            if function is None:
                where = f"{logical_id}.Routes.{route_key}"
                raise TemplateError(
                    f"{where}: FunctionArn must be !GetAtt <Function>.Arn or !Ref <Function>.Alias"
                )
            routes[str(route_key)] = function
        stage = props.get("StageName", "$default")
        return WebSocketApi(logical_id=logical_id, stage_name=stage, routes=routes)

    # -- the HTTP API --------------------------------------------------------------------------------------

    @property
    def http_api(self) -> HttpApi | None:
        """The (single) explicit AWS::Serverless::HttpApi, with its Lambda authorizers."""
        apis = list(self.of_type(HTTP_API))
        if not apis:
            return None
        if len(apis) > 1:
            raise TemplateError("the dev stack serves one HttpApi; this template has " + str(len(apis)))
        logical_id, props = apis[0]
        auth = props.get("Auth") or {}
        authorizers: dict[str, Authorizer] = {}
        for name, spec in (auth.get("Authorizers") or {}).items():
            if "FunctionArn" not in spec:
                continue  # JWT authorizers are not emulated
            identity = spec.get("Identity") or {}
            authorizers[name] = Authorizer(
                name=name,
                function_arn=spec["FunctionArn"],
                identity_headers=tuple(str(h).lower() for h in identity.get("Headers") or ()),
                enable_simple_responses=bool(spec.get("EnableSimpleResponses", False)),
                payload_format_version=str(spec.get("AuthorizerPayloadFormatVersion", "2.0")),
                reauthorize_every=identity.get("ReauthorizeEvery", 300),
            )
        return HttpApi(
            logical_id=logical_id,
            stage_name=props.get("StageName", "$default"),
            authorizers=authorizers,
            default_authorizer=auth.get("DefaultAuthorizer"),
        )


# --------------------------------------------------------------------------------------------------------
# Resolving intrinsics against the local resources.
# --------------------------------------------------------------------------------------------------------


@dataclass
class LocalResource:
    """What a resource is locally: its Ref value and the attributes !GetAtt may ask for."""

    type: str
    ref: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class LocalResources:
    """The local counterpart of a deployed stack: pseudo parameters, parameters, physical resources."""

    region: str = "us-east-1"
    account_id: str = "123456789012"
    stack_name: str = "devstack"
    parameters: dict[str, Any] = field(default_factory=dict)
    conditions: dict[str, Any] = field(default_factory=dict)
    mappings: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, LocalResource] = field(default_factory=dict)

    @classmethod
    def for_template(
        cls, template: Template, parameters: Mapping[str, Any] | None = None, **pseudo: Any
    ) -> LocalResources:
        """Parameters take their Default unless overridden (as `sam deploy --parameter-overrides`)."""
        merged = {**template.parameter_defaults(), **(parameters or {})}
        return cls(parameters=merged, conditions=template.conditions, mappings=template.mappings, **pseudo)

    def add(self, logical_id: str, type_: str, ref: str, **attributes: Any) -> LocalResource:
        resource = LocalResource(type_, ref, dict(attributes))
        self.resources[logical_id] = resource
        return resource

    def ref(self, logical_id: str) -> str:
        return self.resources[logical_id].ref

    def attribute(self, logical_id: str, name: str) -> Any:
        return self.resources[logical_id].attributes[name]

    def names(self, *types: str) -> dict[str, str]:
        """logical id → Ref value for the resources of these types (e.g. table names)."""
        return {lid: res.ref for lid, res in self.resources.items() if res.type in types}

    @property
    def pseudo_parameters(self) -> dict[str, str]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local"
            ),
        }


class _NoValue:
    """AWS::NoValue: the property is removed."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def resolve(value: Any, resources: LocalResources, where: str = "template") -> Any:
    """Evaluate the intrinsic functions in `value` (recursively) the way CloudFormation would for the local
    resources. Raises TemplateError naming `where` for anything that has no local meaning."""
    return _Resolver(resources).resolve(value, where)


def resolve_string(value: Any, resources: LocalResources, where: str) -> str:
    """Resolve to the string an environment variable gets (numbers as digits, booleans as true/false)."""
    resolved = resolve(value, resources, where)
    if isinstance(resolved, bool):
        return "true" if resolved else "false"
    if isinstance(resolved, int | float | str):
        return str(resolved)
    raise TemplateError(f"{where}: resolves to {resolved!r}, not a string")


class _Resolver:
    def __init__(self, resources: LocalResources) -> None:
        self.resources = resources

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            items = [self.resolve(item, where) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument, where)
            if key.startswith("Fn::"):
                method = getattr(self, "fn_" + key[4:].lower(), None)
                if method is None:
                    raise TemplateError(f"{where}: {key} is not supported by the dev stack")
                return method(argument, where)
            if key == "Condition":
                return self.condition(argument, where)
        resolved = {key: self.resolve(item, where) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    # -- Ref and GetAtt ------------------------------------------------------------------------------------

    def ref(self, name: Any, where: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name == "AWS::NotificationARNs":
            return []
        pseudo = self.resources.pseudo_parameters
        if name in pseudo:
            return pseudo[name]
        if name in self.resources.parameters:
            return self.resources.parameters[name]
        if name in self.resources.resources:
            return self.resources.ref(name)
        raise TemplateError(
            f"{where}: !Ref {name} has no local value (not a parameter with a Default, "
            "nor a resource the dev stack provisions)"
        )

    def fn_getatt(self, argument: Any, where: str) -> Any:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        resource, attribute = self.resolve(argument[0], where), self.resolve(argument[1], where)
        local = self.resources.resources.get(resource)
        if local is None:
            raise TemplateError(
                f"{where}: !GetAtt {resource}.{attribute}: {resource} has no local counterpart"
            )
        if attribute not in local.attributes:
            known = ", ".join(sorted(local.attributes)) or "none"
            raise TemplateError(
                f"{where}: !GetAtt {resource}.{attribute} has no local value ({resource} offers: {known})"
            )
        return local.attributes[attribute]

    # -- string functions ----------------------------------------------------------------------------------

    def fn_sub(self, argument: Any, where: str) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], self.resolve(argument[1], where)
        else:
            text, variables = argument, {}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources.resources:
                return str(self.fn_getatt(name, where))
            return str(self.ref(name, where))

        return _SUB_VARIABLE.sub(substitute, str(text))

    def fn_join(self, argument: Any, where: str) -> str:
        delimiter, items = argument
        return str(delimiter).join(str(item) for item in self.resolve(items, where))

    def fn_select(self, argument: Any, where: str) -> Any:
        index, items = self.resolve(argument[0], where), self.resolve(argument[1], where)
        try:
            return items[int(index)]
        except (IndexError, ValueError, TypeError):
            raise TemplateError(f"{where}: !Select index {index!r} out of range for {items!r}") from None

    def fn_split(self, argument: Any, where: str) -> list[str]:
        delimiter, text = argument
        return str(self.resolve(text, where)).split(delimiter)

    def fn_getazs(self, argument: Any, where: str) -> list[str]:
        region = self.resolve(argument, where) or self.resources.region
        return [f"{region}{zone}" for zone in "abc"]

    def fn_base64(self, argument: Any, where: str) -> str:
        return base64.b64encode(str(self.resolve(argument, where)).encode()).decode()

    def fn_tojsonstring(self, argument: Any, where: str) -> str:
        return json.dumps(self.resolve(argument, where), separators=(",", ":"))

    def fn_findinmap(self, argument: Any, where: str) -> Any:
        name, top, second = (self.resolve(part, where) for part in argument[:3])
        try:
            return self.resources.mappings[name][top][second]
        except KeyError:
            raise TemplateError(f"{where}: !FindInMap [{name}, {top}, {second}] is not in Mappings") from None

    # -- conditions ----------------------------------------------------------------------------------------

    def condition(self, name: str, where: str) -> bool:
        if name not in self.resources.conditions:
            raise TemplateError(f"{where}: unknown condition {name!r}")
        return bool(self.resolve(self.resources.conditions[name], f"{where} (condition {name})"))

    def fn_if(self, argument: Any, where: str) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name, where) else when_false, where)

    def fn_equals(self, argument: Any, where: str) -> bool:
        left, right = (self.resolve(part, where) for part in argument)
        return str(left) == str(right)

    def fn_not(self, argument: Any, where: str) -> bool:
        return not self.resolve(argument[0], where)

    def fn_and(self, argument: Any, where: str) -> bool:
        return all(self.resolve(part, where) for part in argument)

    def fn_or(self, argument: Any, where: str) -> bool:
        return any(self.resolve(part, where) for part in argument)
