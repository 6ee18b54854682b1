"""A slow E2B cannot poison a teardown batch: the function stops taking records while it still has time,
reports the rest as batchItemFailures, and they are torn down when they come back.

TeardownFunction runs as Lambda runs it (the SQS event source mapping over the real moto queue, the real SDK
against the local E2B API), from template.yaml with a shorter Timeout and proportionally shorter time-guard
settings, so that a batch of slow kills meets the deadline within seconds instead of a minute.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from e2b import Sandbox

from devstack.functions import InProcessInvoker, local_overrides
from devstack.template import Template
from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline

TIMEOUT_S = 6
KILL_LATENCY_S = 1.5
GUARD = {"TEARDOWN_MIN_REMAINING_MS": "3000", "TEARDOWN_KILL_RESERVE_MS": "2000"}


def short_teardown(template: Template, local_resources: Any, local_endpoints: Any) -> InProcessInvoker:
    document = copy.deepcopy(template.document)
    function = document["Resources"]["TeardownFunction"]["Properties"]
    function["Timeout"] = TIMEOUT_S
    function["Environment"]["Variables"].update(GUARD)
    return InProcessInvoker(
        Template(document, template.root), local_resources, local_overrides(local_endpoints)
    )


def test_a_slow_e2b_defers_records_instead_of_timing_out_the_batch(
    api: Api,
    project: Project,
    template: Template,
    local_resources: Any,
    local_endpoints: Any,
    e2b_env: Any,
    moto_server: Any,
    teardown: TeardownPipeline,
) -> None:
    session_ids = []
    for _ in range(4):
        session = api.create(project)
        Sandbox.create(metadata={"project_id": project.project_id, "session_id": session["id"]}, timeout=600)
        assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
        session_ids.append(session["id"])
    e2b_env.inject_latency("DELETE", "/sandboxes/", KILL_LATENCY_S)

    pipeline = TeardownPipeline(
        short_teardown(template, local_resources, local_endpoints),
        local_resources,
        moto_server.url,
        "us-east-1",
    )
    started = time.monotonic()
    first = pipeline.poll()
    elapsed = time.monotonic() - started

    assert first.received == 4 and first.error is None, first
    # It stopped in time (the function would not have been killed), having done some and deferred the rest.
    assert elapsed < TIMEOUT_S, elapsed
    assert 0 < len(first.failed_ids) < 4, first
    assert first.deleted == 4 - len(first.failed_ids)

    e2b_env.reset_faults()
    pipeline.expire_visibility()
    assert sum(result.deleted for result in pipeline.drain()) == len(first.failed_ids)
    for session_id in session_ids:
        assert e2b_env.sandboxes(metadata={"project_id": project.project_id, "session_id": session_id}) == []
    dead = pipeline.sqs.receive_message(
        QueueUrl=pipeline.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
    ).get("Messages", [])
    assert not [m for m in dead if any(session_id in m["Body"] for session_id in session_ids)]
