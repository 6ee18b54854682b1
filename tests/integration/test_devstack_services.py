"""The local services are real processes: they answer over the network, and stopping one really takes it
away (tests inject "Redis is down" that way)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from e2b import AuthenticationException, Sandbox
from redis.backoff import NoBackoff
from redis.retry import Retry

from devstack.services import (
    E2BServer,
    ManagedProcess,
    MotoServer,
    RedisServer,
    ServiceError,
    free_port,
    kill_sessions,
    stop_all,
)
from plugins.services import can_listen, sandbox_processes

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")


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


def test_concurrent_conditional_transactions_never_acknowledge_one_version_twice() -> None:
    """Compare-and-set on one item from six threads, as concurrent PATCHes do. Plain moto rolls a failed
    transaction back by restoring a copy of the whole table, erasing whatever committed meanwhile (two
    writers acknowledged with the same version, one write lost); the dev stack's moto serialises DynamoDB
    (devstack.moto_server), as DynamoDB's own isolation would."""
    with MotoServer() as server:
        client = boto3.client(
            "dynamodb",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_table(
            TableName="cas",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for n in range(200):  # a table worth copying: the copy is the window in which commits are lost
            client.put_item(TableName="cas", Item={"pk": {"S": f"filler-{n}"}, "data": {"S": "x" * 200}})
        client.put_item(TableName="cas", Item={"pk": {"S": "hot"}, "v": {"N": "0"}})
        acknowledged: list[int] = []

        def writer() -> None:
            for _ in range(8):
                while True:
                    item = client.get_item(TableName="cas", Key={"pk": {"S": "hot"}}, ConsistentRead=True)
                    version = int(item["Item"]["v"]["N"])
                    update = {
                        "TableName": "cas",
                        "Key": {"pk": {"S": "hot"}},
                        "UpdateExpression": "SET v = :next",
                        "ConditionExpression": "v = :seen",
                        "ExpressionAttributeValues": {
                            ":next": {"N": str(version + 1)},
                            ":seen": {"N": str(version)},
                        },
                    }
                    try:
                        client.transact_write_items(TransactItems=[{"Update": update}])
                    except client.exceptions.TransactionCanceledException:
                        continue
                    acknowledged.append(version + 1)
                    break

        threads = [threading.Thread(target=writer) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        final = client.get_item(TableName="cas", Key={"pk": {"S": "hot"}}, ConsistentRead=True)["Item"]

    assert sorted(acknowledged) == list(range(1, 49))
    assert final["v"]["N"] == "48"


@linux_only
def test_a_service_started_by_a_multithreaded_process_still_dies_with_it() -> None:
    """The dev stack restarts redis-server while its gateway and pollers run: a preexec_fn there could
    deadlock the child between fork and exec, so the child sets its parent-death signal itself and execs
    the server (the same pid is the server), which still goes when its parent does."""
    code = (
        "import os, threading, time\n"
        "from devstack.services import RedisServer\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "server = RedisServer().start()\n"
        "print(server.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    pid = int(done.stdout.split()[0])
    assert "redis-server" in Path(f"/proc/{pid}/cmdline").read_text() or not _alive(pid)
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = _alive(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "redis-server outlived the process that started it"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


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


def test_a_sigstopped_service_stops_at_once_and_a_dead_one_is_fine() -> None:
    stopped, dead = RedisServer().start(), RedisServer().start()
    assert stopped.pid is not None and dead.pid is not None
    os.kill(stopped.pid, signal.SIGSTOP)  # a fault test's "Redis hangs"
    os.kill(dead.pid, signal.SIGKILL)

    started = time.monotonic()
    stop_all([stopped, dead])

    assert time.monotonic() - started < 1.5  # SIGCONT first: it handles SIGTERM instead of waiting it out
    assert not stopped.running and not dead.running


class _Stubborn(ManagedProcess):
    """A child that ignores SIGTERM: only SIGKILL ends it."""

    name = "stubborn"

    def command(self) -> list[str]:
        return [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(600)"]  # fmt: skip

    def is_ready(self) -> bool:
        return "ready" in self._log_tail()


def test_services_that_ignore_sigterm_are_killed_together_after_the_grace() -> None:
    services = [_Stubborn().start() for _ in range(3)]
    pids = [service.pid for service in services]

    started = time.monotonic()
    stop_all(services, grace=0.5)

    assert time.monotonic() - started < 1.5  # in parallel: one grace, not three
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture
def e2b_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[E2BServer]:
    with E2BServer() as server:
        monkeypatch.setenv("E2B_API_KEY", server.api_key)
        monkeypatch.setenv("E2B_API_URL", server.url)
        monkeypatch.setenv("E2B_SANDBOX_URL", server.url)
        monkeypatch.delenv("E2B_DEBUG", raising=False)
        yield server


def test_the_e2b_server_is_a_process_that_takes_only_its_key(e2b_server: E2BServer) -> None:
    assert Sandbox.create().commands.run("echo hi").stdout == "hi\n"
    with pytest.raises(AuthenticationException):
        Sandbox.create(api_key="e2b_wrong")


@linux_only
def test_stopping_the_e2b_server_kills_its_sandboxes_and_frees_the_port(e2b_server: E2BServer) -> None:
    sandbox = Sandbox.create()
    sandbox.commands.run("sleep 60 & sleep 60 & wait", background=True, timeout=0)
    sandbox.commands.run("sleep 60 >/dev/null 2>&1 &")
    assert len(sandbox_processes(sandbox.sandbox_id)) >= 3
    port = e2b_server.port

    started = time.monotonic()
    e2b_server.stop()

    assert time.monotonic() - started < 1.5
    assert sandbox_processes(sandbox.sandbox_id) == []
    assert can_listen(port)


@linux_only
def test_the_session_sweep_reaches_what_a_killed_e2b_server_left(e2b_server: E2BServer) -> None:
    sandbox = Sandbox.create()
    sandbox.commands.run("sleep 60 >/dev/null 2>&1 &")
    session, pid = e2b_server.session_id, e2b_server.pid
    assert session is not None and pid is not None
    os.kill(pid, signal.SIGKILL)  # no chance to clean up: its sandbox's processes are orphans now
    time.sleep(0.2)
    assert sandbox_processes(sandbox.sandbox_id) != []

    killed = kill_sessions({session})

    assert set(sandbox_processes(sandbox.sandbox_id)) <= set(killed)
    deadline = time.monotonic() + 2
    while sandbox_processes(sandbox.sandbox_id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_processes(sandbox.sandbox_id) == []
