"""The local services are real processes: they answer over the network, and stopping one really takes it
away (tests inject "Redis is down" that way)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import boto3
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack.services import MotoServer, RedisServer, ServiceError, free_port


def test_redis_down_makes_clients_fail_and_restart_restores_the_same_port(
    redis_server: RedisServer, redis_down: Callable[[], AbstractContextManager[RedisServer]]
) -> None:
    # No retries: redis-py 8 retries a refused connection 3 times with backoff (about 4 s) by default.
    client = redis.Redis(
        host=redis_server.host, port=redis_server.port, socket_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    assert client.ping()
    port = redis_server.port
    with redis_down(), pytest.raises(redis.ConnectionError):
        client.ping()
    assert redis_server.port == port
    assert client.ping()


def test_moto_server_speaks_dynamodb_sqs_and_secrets_manager(
    aws_env: dict[str, str], moto_server: MotoServer
) -> None:
    assert aws_env["AWS_ENDPOINT_URL"] == moto_server.url
    dynamodb, sqs, secrets = boto3.client("dynamodb"), boto3.client("sqs"), boto3.client("secretsmanager")
    assert isinstance(dynamodb.list_tables()["TableNames"], list)
    url = sqs.create_queue(QueueName="services-smoke")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hi")
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "hi"
    secrets.create_secret(Name="services-smoke", SecretString="s3cret")
    assert secrets.get_secret_value(SecretId="services-smoke")["SecretString"] == "s3cret"


@pytest.mark.parametrize("service", [RedisServer, MotoServer])
def test_stop_ends_the_process_and_frees_the_port(service: Any) -> None:
    server = service().start()
    pid, port = server.pid, server.port
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_taken_fixed_port_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        with pytest.raises(ServiceError, match="redis-server did not start") as failure:
            RedisServer(port=taken.getsockname()[1]).start()
    assert "in use" in str(failure.value).lower()
