"""Provisioning builds, in the moto server, exactly what template.yaml declares: what moto describes back
must match the template's key schemas, indexes, TTL, queue attributes and secrets."""

from __future__ import annotations

import json
from typing import Any

from devstack.provision import aws_client, provision
from devstack.services import MotoServer, RedisServer
from devstack.template import QUEUE, TABLE_TYPES, LocalResources, Template


def by_name(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {item[key]: item for item in items}


def test_tables_match_the_template(
    template: Template, local_resources: LocalResources, moto_server: MotoServer
) -> None:
    dynamodb = aws_client("dynamodb", moto_server.url, local_resources.region)
    assert template.tables, "the template declares no tables"
    for logical_id, props in template.tables.items():
        name = local_resources.ref(logical_id)
        table = dynamodb.describe_table(TableName=name)["Table"]
        assert table["KeySchema"] == props["KeySchema"], logical_id
        assert by_name(table["AttributeDefinitions"], "AttributeName") == by_name(
            props["AttributeDefinitions"], "AttributeName"
        )
        described = by_name(table.get("GlobalSecondaryIndexes", []), "IndexName")
        declared = by_name(props.get("GlobalSecondaryIndexes", []), "IndexName")
        assert described.keys() == declared.keys(), logical_id
        for index, spec in declared.items():
            assert described[index]["KeySchema"] == spec["KeySchema"], (logical_id, index)
            assert described[index]["Projection"]["ProjectionType"] == spec["Projection"]["ProjectionType"]
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in props:
            assert ttl == {
                "TimeToLiveStatus": "ENABLED",
                "AttributeName": props["TimeToLiveSpecification"]["AttributeName"],
            }
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED"
        assert local_resources.attribute(logical_id, "Arn") == table["TableArn"]


def test_queues_have_the_template_attributes_and_redrive_to_the_local_dlq(
    template: Template, local_resources: LocalResources, moto_server: MotoServer
) -> None:
    sqs = aws_client("sqs", moto_server.url, local_resources.region)
    for logical_id, props in template.queues.items():
        url = local_resources.ref(logical_id)
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["QueueArn"] == local_resources.attribute(logical_id, "Arn")
        if "VisibilityTimeout" in props:
            assert attributes["VisibilityTimeout"] == str(props["VisibilityTimeout"])
        if "RedrivePolicy" in props:
            policy = json.loads(attributes["RedrivePolicy"])
            dlq = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
            assert policy["deadLetterTargetArn"] == local_resources.attribute(dlq, "Arn")
            assert int(policy["maxReceiveCount"]) == int(props["RedrivePolicy"]["maxReceiveCount"])


def test_the_e2b_secret_holds_the_local_e2b_key(
    template: Template, local_resources: LocalResources, moto_server: MotoServer, local_e2b: Any
) -> None:
    secrets = aws_client("secretsmanager", moto_server.url, local_resources.region)
    e2b_secrets = [logical_id for logical_id in template.secrets if "e2b" in logical_id.lower()]
    for logical_id in e2b_secrets:
        value = secrets.get_secret_value(SecretId=local_resources.ref(logical_id))["SecretString"]
        assert value == local_e2b.api_key


def test_provisioning_again_is_idempotent(
    template: Template,
    local_resources: LocalResources,
    moto_server: MotoServer,
    redis_server: RedisServer,
    local_e2b: Any,
) -> None:
    again = provision(
        template,
        endpoint_url=moto_server.url,
        region=local_resources.region,
        redis_host=redis_server.host,
        redis_port=redis_server.port,
        e2b_api_key=local_e2b.api_key,  # the same inputs (without it the E2B secret would get a placeholder)
    )
    for types in (TABLE_TYPES, (QUEUE,)):
        assert again.names(*types) == local_resources.names(*types)


def test_a_small_template_with_streams_lsi_fifo_and_generated_secrets(moto_server: MotoServer) -> None:
    template = Template.from_text(
        """\
Resources:
  Events:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: !Sub "${AWS::StackName}-events"
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: sk, AttributeType: S}
        - {AttributeName: at, AttributeType: N}
      KeySchema: [{AttributeName: pk, KeyType: HASH}, {AttributeName: sk, KeyType: RANGE}]
      LocalSecondaryIndexes:
        - IndexName: by_time
          KeySchema: [{AttributeName: pk, KeyType: HASH}, {AttributeName: at, KeyType: RANGE}]
          Projection: {ProjectionType: INCLUDE, NonKeyAttributes: [payload]}
      StreamSpecification: {StreamViewType: NEW_IMAGE}
  Jobs:
    Type: AWS::SQS::Queue
    Properties: {FifoQueue: true, ContentBasedDeduplication: true, VisibilityTimeout: 90}
  Password:
    Type: AWS::SecretsManager::Secret
    Properties:
      GenerateSecretString:
        {SecretStringTemplate: '{"user": "app"}', GenerateStringKey: password, PasswordLength: 20}
"""
    )
    resources = provision(template, endpoint_url=moto_server.url, stack_name="small")
    dynamodb = aws_client("dynamodb", moto_server.url, "us-east-1")
    table = dynamodb.describe_table(TableName="small-events")["Table"]
    assert table["LocalSecondaryIndexes"][0]["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["payload"],
    }
    assert resources.attribute("Events", "StreamArn") == table["LatestStreamArn"]
    assert resources.attribute("Jobs", "QueueName") == "small-Jobs.fifo"
    secrets = aws_client("secretsmanager", moto_server.url, "us-east-1")
    secret = json.loads(secrets.get_secret_value(SecretId=resources.ref("Password"))["SecretString"])
    assert secret["user"] == "app" and len(secret["password"]) == 20


def test_queues_refuse_a_message_over_their_maximum_size_as_sqs_does(
    template: Template, local_resources: LocalResources, moto_server: MotoServer
) -> None:
    """template.yaml caps each queue at 256 KiB (SQS allows up to 1 MiB); the local queues refuse the same."""
    from botocore.exceptions import ClientError

    sqs = aws_client("sqs", moto_server.url, local_resources.region)
    assert "FailedInvocationsQueue" in template.queues  # and the teardown queue and its DLQ
    for name, queue in template.queues.items():
        assert queue.get("MaximumMessageSize") == 262144, name
        url = local_resources.ref(name)
        sqs.send_message(QueueUrl=url, MessageBody="x" * 262144)
        try:
            sqs.send_message(QueueUrl=url, MessageBody="x" * 262145)
        except ClientError as error:
            assert error.response["Error"]["Code"] == "InvalidParameterValue", name
        else:
            raise AssertionError(f"a message over {name}'s MaximumMessageSize was accepted")
        finally:
            while messages := sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0
            ).get("Messages", []):
                for message in messages:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
