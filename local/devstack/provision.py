"""Create the template's tables, queues and secrets in moto, exactly as template.yaml defines them, and
return the local resource map that the functions' environments are resolved against.

Idempotent: provisioning twice against the same moto server finds what exists and returns the same map.
"""

from __future__ import annotations

import json
import re
import secrets as random_secrets
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.template import (
    CACHE_TYPES,
    EVENT_BUS,
    FUNCTION,
    HTTP_API,
    KMS_KEY,
    QUEUE,
    SECRET,
    TABLE_TYPES,
    WEBSOCKET_API,
    LocalResources,
    Template,
    TemplateError,
    resolve,
)

LOCAL_API_ID = "devstack00"  # API Gateway ids are 10 lowercase alphanumerics
LOCAL_WEBSOCKET_API_ID = "devstackws"
EVENTS_TAP = "events-tap"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
E2B_SECRET = re.compile(r"e2b", re.IGNORECASE)

# Table properties CreateTable accepts as they are written in the template.
_TABLE_PASSTHROUGH = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "TableClass",
    "DeletionProtectionEnabled",
)
_INDEX_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")
# CloudFormation AWS::SQS::Queue properties → SetQueueAttributes names (the same except for RedrivePolicy's
# JSON encoding and the name, which is separate).
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "SqsManagedSseEnabled",
)


def aws_client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for the local endpoint with dummy credentials: never a real account's."""
    make_client: Any = boto3.client  # Any: the service name is not a literal here
    return make_client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        **DUMMY_CREDENTIALS,
    )


def provision(
    template: Template,
    *,
    endpoint_url: str,
    region: str = "us-east-1",
    stack_name: str = "devstack",
    redis_host: str = "127.0.0.1",
    redis_port: int = 6379,
    e2b_api_key: str | None = None,
    secret_values: dict[str, str] | None = None,
    parameters: dict[str, Any] | None = None,
) -> LocalResources:
    """Provision everything the functions use and map every resource they may reference.

    Secrets get `secret_values[logical_id]` if given; else, when `e2b_api_key` is given, every secret whose
    logical id or Name mentions E2B gets it (the functions then reach the local E2B API with it); else
    the template's SecretString, or a random value for GenerateSecretString.
    """
    resources = LocalResources.for_template(template, parameters, region=region, stack_name=stack_name)
    arn = f"arn:aws:{{}}:{region}:{resources.account_id}:{{}}"

    # Resources the functions may reference but that need nothing created.
    for logical_id, _ in template.of_type(FUNCTION):
        resources.add(logical_id, FUNCTION, logical_id, Arn=arn.format("lambda", f"function:{logical_id}"))
    for logical_id, _ in template.of_type(HTTP_API):
        resources.add(logical_id, HTTP_API, LOCAL_API_ID)
    for logical_id, resource in template.resources.items():
        if resource.get("Type") in CACHE_TYPES:
            endpoint = {"Address": redis_host, "Port": str(redis_port)}
            resources.add(
                logical_id,
                str(resource["Type"]),
                logical_id.lower(),
                **{
                    f"{kind}.{part}": value
                    for kind in (
                        "Endpoint",
                        "PrimaryEndPoint",
                        "RedisEndpoint",
                        "ConfigurationEndPoint",
                        "ReaderEndpoint",
                    )
                    for part, value in endpoint.items()
                },
            )
        elif resource.get("Type") == "AWS::Logs::LogGroup":
            props = resource.get("Properties") or {}
            given = props.get("LogGroupName") or f"/aws/devstack/{logical_id}"
            name = str(_resolve_soft(given, resources, logical_id))
            log_arn = arn.format("logs", f"log-group:{name}:*")
            resources.add(logical_id, "AWS::Logs::LogGroup", name, Arn=log_arn)
        elif resource.get("Type") == "AWS::Serverless::LayerVersion":
            resources.add(
                logical_id,
                "AWS::Serverless::LayerVersion",
                arn.format("lambda", f"layer:{stack_name}-{logical_id}:1"),
            )

    for logical_id, _ in template.of_type(WEBSOCKET_API):
        resources.add(logical_id, WEBSOCKET_API, LOCAL_WEBSOCKET_API_ID)

    _provision_tables(template, resources, endpoint_url)
    _provision_queues(template, resources, endpoint_url)
    _provision_secrets(template, resources, endpoint_url, e2b_api_key, secret_values or {})
    _provision_event_buses(template, resources, endpoint_url)
    _provision_kms_keys(template, resources, endpoint_url)
    return resources


def _resolve_soft(value: Any, resources: LocalResources, where: str) -> Any:
    """Resolve what can be resolved now (a log group named after a function), keep the rest as written."""
    try:
        return resolve(value, resources, where)
    except TemplateError:
        return value


def physical_name(resources: LocalResources, logical_id: str) -> str:
    """CloudFormation would name it `<stack>-<LogicalId>-<RANDOM>`; locally the name is stable."""
    return f"{resources.stack_name}-{logical_id}"


# -- DynamoDB ----------------------------------------------------------------------------------------------


def table_request(template: Template, logical_id: str, resources: LocalResources) -> dict[str, Any]:
    """The CreateTable request for a template table (SimpleTable expanded), its name resolved locally."""
    resource_type = template.resource_type(logical_id)
    props = resolve(template.resources[logical_id].get("Properties") or {}, resources, logical_id)
    name = props.get("TableName") or physical_name(resources, logical_id)
    if resource_type == "AWS::Serverless::SimpleTable":
        key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
        kind = {"String": "S", "Number": "N", "Binary": "B"}[key["Type"]]
        return {
            "TableName": name,
            "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": kind}],
            "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
            "BillingMode": "PAY_PER_REQUEST",
        }
    request = {"TableName": name, **{key: props[key] for key in _TABLE_PASSTHROUGH if key in props}}
    billing = "PROVISIONED" if "ProvisionedThroughput" in props else "PAY_PER_REQUEST"
    request.setdefault("BillingMode", billing)
    # Indexes: CloudFormation-only keys (ContributorInsightsSpecification...) are not CreateTable's.
    for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(kind):
            request[kind] = [{k: v for k, v in index.items() if k in _INDEX_KEYS} for index in props[kind]]
    if "StreamSpecification" in props:
        view = props["StreamSpecification"]["StreamViewType"]
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view}
    if "SSESpecification" in props:
        request["SSESpecification"] = {"Enabled": bool(props["SSESpecification"].get("SSEEnabled", False))}
    return request


def _provision_tables(template: Template, resources: LocalResources, endpoint_url: str) -> None:
    dynamodb = aws_client("dynamodb", endpoint_url, resources.region)
    for logical_id, _ in template.of_type(*TABLE_TYPES):
        request = table_request(template, logical_id, resources)
        name = request["TableName"]
        try:
            description = dynamodb.create_table(**request)["TableDescription"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceInUseException":
                raise
            description = dynamodb.describe_table(TableName=name)["Table"]
        ttl = (template.resources[logical_id].get("Properties") or {}).get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") != "ENABLED":
                dynamodb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
        attributes = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attributes["StreamArn"] = description["LatestStreamArn"]
        resources.add(logical_id, template.resource_type(logical_id), name, **attributes)


# -- SQS ---------------------------------------------------------------------------------------------------


def _provision_queues(template: Template, resources: LocalResources, endpoint_url: str) -> None:
    """Dead-letter queues first: a queue's RedrivePolicy needs its DLQ's ARN."""
    sqs = aws_client("sqs", endpoint_url, resources.region)
    pending = dict(template.of_type(QUEUE))
    while pending:
        progressed = False
        for logical_id, props in list(pending.items()):
            try:
                resolved = resolve(props, resources, logical_id)
            except TemplateError:
                continue  # refers to a queue not created yet
            name = str(resolved.get("QueueName") or physical_name(resources, logical_id))
            if resolved.get("FifoQueue") and not name.endswith(".fifo"):
                name += ".fifo"
            attributes = {
                key: json.dumps(value) if isinstance(value, dict) else _attribute_string(value)
                for key, value in resolved.items()
                if key in _QUEUE_ATTRIBUTES
            }
            try:
                url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            except ClientError as error:  # exists with other attributes: make them the template's
                if error.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
                    raise
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                sqs.set_queue_attributes(
                    QueueUrl=url, Attributes={k: v for k, v in attributes.items() if k != "FifoQueue"}
                )
            queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            resources.add(logical_id, QUEUE, url, Arn=queue_arn, QueueName=name, QueueUrl=url)
            del pending[logical_id]
            progressed = True
        if not progressed:
            # Resolve one again to raise the real error (a missing DLQ, an unsupported intrinsic).
            logical_id, props = next(iter(pending.items()))
            resolve(props, resources, logical_id)
            raise TemplateError(f"{logical_id}: cannot be provisioned (circular queue references?)")


def _attribute_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- Secrets Manager ---------------------------------------------------------------------------------------


def _provision_secrets(
    template: Template,
    resources: LocalResources,
    endpoint_url: str,
    e2b_api_key: str | None,
    secret_values: dict[str, str],
) -> None:
    client = aws_client("secretsmanager", endpoint_url, resources.region)
    for logical_id, props in template.of_type(SECRET):
        resolved = resolve(props, resources, logical_id)
        name = str(resolved.get("Name") or physical_name(resources, logical_id))
        if logical_id in secret_values:
            value = secret_values[logical_id]
        elif e2b_api_key is not None and (E2B_SECRET.search(logical_id) or E2B_SECRET.search(name)):
            value = e2b_api_key
        elif "SecretString" in resolved:
            value = str(resolved["SecretString"])
        else:
            value = _generated_secret(resolved.get("GenerateSecretString") or {})
        try:
            secret_arn = client.create_secret(Name=name, SecretString=value)["ARN"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceExistsException":
                raise
            secret_arn = client.put_secret_value(SecretId=name, SecretString=value)["ARN"]
        # Ref and !GetAtt .Id of a secret are its ARN.
        resources.add(logical_id, SECRET, secret_arn, Id=secret_arn)


def _generated_secret(spec: dict[str, Any]) -> str:
    length = int(spec.get("PasswordLength", 32))
    password = random_secrets.token_urlsafe(length)[:length]
    template, key = spec.get("SecretStringTemplate"), spec.get("GenerateStringKey")
    if template and key:
        return json.dumps({**json.loads(template), key: password})
    return password


# -- KMS ---------------------------------------------------------------------------------------------------


def _provision_kms_keys(template: Template, resources: LocalResources, endpoint_url: str) -> None:
    """Each key once per moto server: found again by a local alias (CloudFormation needs none), so a
    re-provisioned stack keeps the key its stored content was sealed under."""
    kms = aws_client("kms", endpoint_url, resources.region)
    for logical_id, props in template.of_type(KMS_KEY):
        alias = f"alias/{physical_name(resources, logical_id)}"
        try:
            metadata = kms.describe_key(KeyId=alias)["KeyMetadata"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "NotFoundException":
                raise
            description = _resolve_soft(props.get("Description", ""), resources, logical_id)
            metadata = kms.create_key(
                Description=description if isinstance(description, str) else logical_id,
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
            )["KeyMetadata"]
            kms.create_alias(AliasName=alias, TargetKeyId=metadata["KeyId"])
        resources.add(logical_id, KMS_KEY, metadata["KeyId"], Arn=metadata["Arn"], KeyId=metadata["KeyId"])


# -- EventBridge -------------------------------------------------------------------------------------------


def _provision_event_buses(template: Template, resources: LocalResources, endpoint_url: str) -> None:
    events = aws_client("events", endpoint_url, resources.region)
    for logical_id, props in template.of_type(EVENT_BUS):
        name = str(resolve(props, resources, logical_id).get("Name") or physical_name(resources, logical_id))
        try:
            bus_arn = events.create_event_bus(Name=name)["EventBusArn"]
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                raise
            bus_arn = events.describe_event_bus(Name=name)["Arn"]
        resources.add(logical_id, EVENT_BUS, name, Arn=bus_arn, Name=name)


def tap_event_buses(template: Template, resources: LocalResources, endpoint_url: str) -> str | None:
    """A local-only SQS queue that receives every event put on the template's buses (a rule per bus), so
    that a developer or a test can read what other systems would get. Its URL, or None without a bus."""
    buses = [resources.ref(logical_id) for logical_id, _ in template.of_type(EVENT_BUS)]
    if not buses:
        return None
    sqs = aws_client("sqs", endpoint_url, resources.region)
    events = aws_client("events", endpoint_url, resources.region)
    name = physical_name(resources, EVENTS_TAP)
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for bus in buses:
        events.put_rule(
            Name=name, EventBusName=bus, EventPattern=json.dumps({"account": [resources.account_id]})
        )
        events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "tap", "Arn": queue_arn}])
    return str(url)
