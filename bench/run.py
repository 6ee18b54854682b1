"""Benchmarks: each route handler against the same raw calls it has to make, measured in one run.

It starts the same real local services the tests use (moto server, redis-server, the local E2B API) and
builds the tables from template.yaml. It prints medians and the ratio handler / raw calls for:
- GET, warm:   GetSessionFunction (cache hit)              vs one redis GET
- GET, cold:   GetSessionFunction (cache miss → DynamoDB)  vs redis GET + GetItem + redis SET
- DELETE:      DeleteSessionFunction  vs conditional UpdateItem + redis SET + SQS SendMessage
- authorizer:  AuthorizerFunction     vs one GetItem
and the import (cold start) cost of each handler module in a fresh interpreter.
A ratio near 1 means the handler adds little beyond the I/O it must do. Absolute times depend on the
machine and on moto; the ratios are the point.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import redis

from devstack.e2b_local import LocalE2B
from devstack.functions import InProcessInvoker, LocalEndpoints, local_overrides
from devstack.provision import provision
from devstack.services import MotoServer, RedisServer
from devstack.template import Template

# Handler logs would drown the figures: warnings only (read when Powertools' Logger is created).
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ROUNDS = 200


def median_ms(fn: Callable[[], Any], rounds: int = ROUNDS) -> float:
    for _ in range(10):
        fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def event(name: str, **changes: Any) -> dict[str, Any]:
    data = json.loads((ROOT / "events" / name).read_text())
    for key, value in changes.items():
        data[key] = value
    return data


def import_cost_ms(code_uri: Path) -> float:
    """Median wall time of a fresh interpreter importing the handler module, minus an empty interpreter."""
    code = f"import runpy; runpy.run_path({str(ROOT / code_uri / 'app.py')!r})"

    def run(source: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", source], check=True, capture_output=True)
        return time.perf_counter() - started

    empty = statistics.median(run("pass") for _ in range(3))
    return (statistics.median(run(code) for _ in range(3)) - empty) * 1000


def main() -> None:
    # Metrics are EMF lines printed to stdout (CloudWatch ingests them in Lambda): captured, not shown.
    with contextlib.redirect_stdout(io.StringIO()):
        results, template = measure()
    print(f"{'route':<20} {'handler ms':>11} {'raw ms':>9} {'ratio':>7}")
    for name, handler_ms, raw_ms in results:
        print(f"{name:<20} {handler_ms:>11.3f} {raw_ms:>9.3f} {handler_ms / raw_ms:>7.2f}")
    print()
    print("import cost of each handler module (fresh interpreter, median of 3, minus an empty interpreter)")
    for logical_id, function in template.functions.items():
        print(f"  {logical_id:<24} {import_cost_ms(function.code_uri):>7.0f} ms")


def measure() -> tuple[list[tuple[str, float, float]], Template]:
    template = Template.load(ROOT / "template.yaml")
    with MotoServer() as moto, RedisServer() as cache, LocalE2B() as e2b:
        e2b.start()
        resources = provision(
            template,
            endpoint_url=moto.url,
            region=REGION,
            redis_host=cache.host,
            redis_port=cache.port,
            e2b_api_key=e2b.api_key,
        )
        endpoints = LocalEndpoints(moto.url, REGION, e2b.url, e2b.url, e2b.api_key)
        invoker = InProcessInvoker(template, resources, local_overrides(endpoints))
        for name, value in local_overrides(endpoints).items():
            os.environ.setdefault(name, value)

        from session_service.runtime import container_for
        from session_service.settings import Settings

        admin = container_for(
            Settings(
                region=REGION,
                aws_endpoint_url=moto.url,
                projects_table=resources.ref("ProjectsTable"),
                api_keys_table=resources.ref("ApiKeysTable"),
            )
        ).admin
        project = admin.create_project("bench")
        key = admin.issue_key(project.project_id).api_key
        authorizer = {"lambda": {"project_id": project.project_id}}

        def http(name: str, **changes: Any) -> dict[str, Any]:
            data = event(name, **changes)
            data["requestContext"]["authorizer"] = authorizer
            return data

        created = invoker.invoke(
            "CreateSessionFunction", http("create_session.json", body='{"user_id": "bench"}')
        )
        session_id = json.loads(created["body"])["id"]
        path = f"/v1/sessions/{session_id}"
        get_event = http("get_session.json", rawPath=path, pathParameters={"session_id": session_id})

        ddb = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto.url)
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=moto.url)
        rds = redis.Redis(host=cache.host, port=cache.port)
        sessions_table = resources.ref("SessionsTable")
        key_item = {"project_id": {"S": project.project_id}, "session_id": {"S": session_id}}
        cache_key = f"session:v1:{project.project_id}:{session_id}"
        results: list[tuple[str, float, float]] = []

        invoker.invoke("GetSessionFunction", copy.deepcopy(get_event))  # warm the cache
        handler = median_ms(lambda: invoker.invoke("GetSessionFunction", copy.deepcopy(get_event)))
        raw = median_ms(lambda: rds.get(cache_key))
        results.append(("GET (cache hit)", handler, raw))

        def cold_get() -> Any:
            rds.delete(cache_key)
            return invoker.invoke("GetSessionFunction", copy.deepcopy(get_event))

        def cold_raw() -> Any:
            rds.delete(cache_key)
            rds.get(cache_key)
            item = ddb.get_item(TableName=sessions_table, Key=key_item, ConsistentRead=True)
            rds.set(cache_key, json.dumps(item["Item"], default=str), ex=30)

        results.append(("GET (cache miss)", median_ms(cold_get, 100), median_ms(cold_raw, 100)))

        victims = [
            json.loads(
                invoker.invoke("CreateSessionFunction", http("create_session.json", body='{"user_id": "b"}'))[
                    "body"
                ]
            )["id"]
            for _ in range(110)
        ]
        queue_url = resources.ref("TeardownQueue")

        def delete_one() -> Any:
            victim = victims.pop()
            return invoker.invoke(
                "DeleteSessionFunction",
                http(
                    "delete_session.json",
                    rawPath=f"/v1/sessions/{victim}",
                    pathParameters={"session_id": victim},
                ),
            )

        raw_victims = [f"ses_{i:026d}" for i in range(110)]
        for victim in raw_victims:
            ddb.put_item(
                TableName=sessions_table,
                Item={"project_id": {"S": project.project_id}, "session_id": {"S": victim}},
            )

        def raw_delete() -> Any:
            victim = raw_victims.pop()
            ddb.update_item(
                TableName=sessions_table,
                Key={"project_id": {"S": project.project_id}, "session_id": {"S": victim}},
                UpdateExpression="SET deleted_at = :t",
                ConditionExpression="attribute_exists(session_id) AND attribute_not_exists(deleted_at)",
                ExpressionAttributeValues={":t": {"S": "2026-01-01T00:00:00Z"}},
            )
            rds.set(f"session:v1:{project.project_id}:{victim}", "!", ex=86400)
            sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({"session_id": victim}))

        results.append(("DELETE", median_ms(delete_one, 100), median_ms(raw_delete, 100)))

        auth_event = event("authorizer.json")
        auth_event["headers"]["x-api-key"] = key
        keys_table = resources.ref("ApiKeysTable")
        hashed = hashlib.sha256(key.encode()).hexdigest()
        results.append(
            (
                "authorizer",
                median_ms(lambda: invoker.invoke("AuthorizerFunction", copy.deepcopy(auth_event))),
                median_ms(
                    lambda: ddb.get_item(
                        TableName=keys_table, Key={"key_hash": {"S": hashed}}, ConsistentRead=True
                    )
                ),
            )
        )

    return results, template


if __name__ == "__main__":
    main()
