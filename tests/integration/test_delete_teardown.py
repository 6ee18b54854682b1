"""DELETE and teardown against real local services: moto server (DynamoDB, SQS, Secrets Manager), a real
redis-server, and the local E2B-compatible API driven by the real e2b SDK. Faults are injected for real:
redis-server is stopped, the E2B API answers 500/429 or goes away, DynamoDB is pointed at a closed port."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from e2b import Sandbox

from devstack.services import free_port
from plugins.api import Api, Project
from plugins.streams import StreamPipeline
from plugins.teardown import TeardownPipeline
from session_service.adapters.redis_cache import TOMBSTONE, cache_key
from session_service.domain import clock, keys


def sandbox_for(project: Project, session_id: str, *, paused: bool = False) -> str:
    sandbox = Sandbox.create(
        metadata={"project_id": project.project_id, "session_id": session_id}, timeout=600
    )
    if paused:
        sandbox.pause()
    return sandbox.sandbox_id


def remaining(e2b: Any, project: Project, session_id: str) -> list[dict]:
    return e2b.sandboxes(metadata={"project_id": project.project_id, "session_id": session_id})


# --- the DELETE contract -------------------------------------------------------------------------------


def test_delete_once_then_404_everywhere(api: Api, project: Project, teardown: TeardownPipeline) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    deleted = api.call("DELETE", path, key=project.api_key)
    assert deleted.status == 200
    assert deleted.body == {"id": session["id"], "deleted": True, "deleted_at": deleted.body["deleted_at"]}
    assert api.call("DELETE", path, key=project.api_key).status == 404
    assert api.call("GET", path, key=project.api_key).status == 404
    assert api.call("PATCH", path, key=project.api_key, body={"metadata": {"x": 1}}).status == 404
    assert (
        api.call("DELETE", "/v1/sessions/ses_01jc0000000000000000000000", key=project.api_key).status == 404
    )
    assert api.call("DELETE", path, key=None).status == 401
    assert teardown.depth() == 1


def test_the_tombstone_carries_its_ttl_and_pending_marker(
    api: Api, project: Project, invoker: Any, teardown: TeardownPipeline
) -> None:
    import boto3

    from session_service.domain.clock import parse_iso

    session = api.create(project)
    deleted = api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).body
    env = invoker.env_for("DeleteSessionFunction")
    item = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL"]).get_item(
        TableName=env["SESSIONS_TABLE"],
        Key={
            "pk": {"S": keys.session_partition(project.project_id, session["id"])},
            "session_id": {"S": session["id"]},
        },
        ConsistentRead=True,
    )["Item"]
    retention = int(env["TOMBSTONE_RETENTION_DAYS"]) * 86_400
    assert int(item["expires_at"]["N"]) == int(parse_iso(deleted["deleted_at"]).timestamp()) + retention
    assert item["teardown_pending"]["S"] == keys.pending_partition(session["id"])
    assert item["teardown_state"]["S"] == "pending"
    assert item["deleted_at"]["S"] == deleted["deleted_at"] and item["delete_token"]["S"]


def test_another_project_cannot_delete_and_the_owner_still_can(
    api: Api, project: Project, other_project: Project, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    assert api.call("DELETE", path, key=other_project.api_key).status == 404
    assert api.call("GET", path, key=project.api_key).body == session
    assert teardown.depth() == 0
    assert api.call("DELETE", path, key=project.api_key).status == 200


def test_concurrent_deletes_give_one_200_and_one_teardown(
    api: Api, project: Project, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda _: api.call("DELETE", path, key=project.api_key).status, range(32)))
    assert sorted(statuses) == [200] + [404] * 31
    assert teardown.depth() == 1


def test_warm_cached_get_then_delete_then_get_is_404(
    api: Api, project: Project, redis_server: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    assert api.call("GET", path, key=project.api_key).status == 200
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    key = cache_key(project.project_id, session["id"])
    assert client.get(key) is not None  # warm
    assert api.call("DELETE", path, key=project.api_key).status == 200
    assert client.get(key) == TOMBSTONE
    assert api.call("GET", path, key=project.api_key).status == 404


def test_a_stale_fill_after_delete_cannot_resurrect_the_session(
    api: Api, project: Project, invoker: Any, teardown: TeardownPipeline
) -> None:
    """The exact interleaving that resurrects sessions elsewhere: a reader reads the item, the DELETE commits
    and evicts, then the reader's fill arrives."""
    from session_service.runtime import container_for
    from session_service.settings import Settings

    session = api.create(project)
    settings = Settings.from_env(invoker.env_for("GetSessionFunction"))
    services = container_for(settings)
    as_of = clock.now_ms()
    before = services.sessions._load_live(project.project_id, session["id"])  # the slow reader's read
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    services.cache.fill(before, as_of)  # ...and its late fill
    assert api.call("GET", f"/v1/sessions/{session['id']}", key=project.api_key).status == 404


def test_tag_can_be_reused_after_delete(api: Api, project: Project, teardown: TeardownPipeline) -> None:
    old = api.create(project, tag="reuse-me")
    assert api.call("DELETE", f"/v1/sessions/{old['id']}", key=project.api_key).status == 200
    new = api.create(project, tag="reuse-me")
    assert new["id"] != old["id"]


def test_tombstones_are_listed_only_when_asked_with_teardown_state(
    api: Api, project: Project, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    live, dead = api.create(project), api.create(project)
    deleted = api.call("DELETE", f"/v1/sessions/{dead['id']}", key=project.api_key).body
    plain = api.call("GET", "/v1/sessions", key=project.api_key).body["items"]
    assert [item["id"] for item in plain] == [live["id"]]
    everything = api.call("GET", "/v1/sessions", key=project.api_key, query={"include_deleted": "true"})
    tomb = next(item for item in everything.body["items"] if item["id"] == dead["id"])
    assert tomb["deleted"] is True and tomb["deleted_at"] == deleted["deleted_at"]
    assert tomb["teardown"]["state"] == "pending"
    synced = api.call("GET", "/v1/sessions", key=project.api_key, query={"changed_since": dead["created_at"]})
    assert any(item["id"] == dead["id"] and item.get("deleted") for item in synced.body["items"])
    teardown.drain()
    after = api.call("GET", "/v1/sessions", key=project.api_key, query={"include_deleted": "true"})
    tomb = next(item for item in after.body["items"] if item["id"] == dead["id"])
    assert tomb["teardown"]["state"] == "done" and tomb["teardown"]["completed_at"]
    assert "config" not in tomb and "metadata" not in tomb


# --- teardown ------------------------------------------------------------------------------------------


def test_teardown_kills_running_and_paused_sandboxes_of_that_session_only(
    api: Api, project: Project, other_project: Project, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    doomed, survivor = api.create(project), api.create(project)
    foreign = api.create(other_project)
    sandbox_for(project, doomed["id"])
    sandbox_for(project, doomed["id"], paused=True)
    keep = {
        sandbox_for(project, survivor["id"], paused=True),
        sandbox_for(other_project, foreign["id"]),
        sandbox_for(other_project, doomed["id"]),  # same session id under another project: not ours
    }
    assert api.call("DELETE", f"/v1/sessions/{doomed['id']}", key=project.api_key).status == 200
    results = teardown.drain()
    assert [r.failed_ids for r in results] == [[]]
    assert remaining(e2b_env, project, doomed["id"]) == []
    assert {s["sandbox_id"] for s in e2b_env.sandboxes()} == keep
    assert not any("/connect" in path for _, path, _ in e2b_env.request_log)  # never resumed to be killed


def test_teardown_follows_every_page(
    api: Api, project: Project, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    session = api.create(project)
    e2b_env.set_page_limit(40)
    for i in range(130):
        sandbox_for(project, session["id"], paused=i % 3 == 0)
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    teardown.drain(rounds=5)  # 130 > one run's cap of 100: the rest is re-enqueued and killed next
    assert remaining(e2b_env, project, session["id"]) == []
    tomb = api.call("GET", "/v1/sessions", key=project.api_key, query={"include_deleted": "true"}).body[
        "items"
    ]
    assert next(t for t in tomb if t["id"] == session["id"])["teardown"]["sandboxes_killed"] == 130


def test_e2b_unreachable_then_back_teardown_completes(
    api: Api, project: Project, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    session = api.create(project)
    sandbox_for(project, session["id"], paused=True)
    e2b_env.stop()
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    failed = teardown.poll()
    assert failed.received == 1 and len(failed.failed_ids) == 1
    e2b_env.restart()
    teardown.expire_visibility()
    assert [r.failed_ids for r in teardown.drain()] == [[]]
    assert remaining(e2b_env, project, session["id"]) == []


def test_a_failed_kill_fails_only_its_record_and_a_retry_finishes(
    api: Api, project: Project, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    broken, fine = api.create(project), api.create(project)
    broken_box = sandbox_for(project, broken["id"])
    sandbox_for(project, fine["id"])
    for session in (broken, fine):
        assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    e2b_env.inject("DELETE", f"/sandboxes/{broken_box}", 500, times=1)
    first = teardown.poll()
    assert first.received == 2 and len(first.failed_ids) == 1
    assert remaining(e2b_env, project, fine["id"]) == []
    assert len(remaining(e2b_env, project, broken["id"])) == 1
    teardown.expire_visibility()
    assert [r.failed_ids for r in teardown.drain()] == [[]]
    assert remaining(e2b_env, project, broken["id"]) == []


def test_rate_limited_kills_back_off_and_complete(
    api: Api, project: Project, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    session = api.create(project)
    box = sandbox_for(project, session["id"])
    e2b_env.inject("DELETE", f"/sandboxes/{box}", 429, times=5)  # beyond the SDK's own 3 retries
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    assert [r.failed_ids for r in teardown.drain()] == [[]]
    assert remaining(e2b_env, project, session["id"]) == []
    assert [status for _, path, status in e2b_env.request_log if path == f"/sandboxes/{box}"][-1] == 204


def test_redis_down_delete_succeeds_reads_404_and_the_tombstone_lands_when_back(
    api: Api,
    project: Project,
    teardown: TeardownPipeline,
    cache_invalidator: StreamPipeline,
    redis_down: Any,
    redis_server: Any,
    e2b_env: Any,
) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    with redis_down():
        assert api.call("GET", path, key=project.api_key).status == 200  # served by DynamoDB
        assert api.call("DELETE", path, key=project.api_key).status == 200
        assert api.call("GET", path, key=project.api_key).status == 404
        assert [r.failed_ids for r in teardown.drain()] == [[]]  # teardown does not need Redis
        assert cache_invalidator.drain().retried  # the invalidation waits for Redis...
    assert cache_invalidator.drain().delivered  # ...and lands once it answers
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    assert client.get(cache_key(project.project_id, session["id"])) == TOMBSTONE
    assert teardown_state(api, project, session["id"]) == "done"


def test_dynamodb_down_is_503_and_nothing_changes(
    api: Api, project: Project, teardown: TeardownPipeline, redis_server: Any
) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    api.call("GET", path, key=project.api_key)  # warm cache
    closed = f"http://127.0.0.1:{free_port()}"
    reply = api.call("DELETE", path, key=project.api_key, env={"AWS_ENDPOINT_URL": closed})
    assert reply.status == 503 and reply.body["error"]["code"] == "service_unavailable"
    assert "Traceback" not in json.dumps(reply.body)
    assert teardown.depth() == 0
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    assert client.get(cache_key(project.project_id, session["id"])) not in (None, TOMBSTONE)
    assert api.call("GET", path, key=project.api_key).body == session


def teardown_state(api: Api, project: Project, session_id: str) -> str:
    items = api.call(
        "GET", "/v1/sessions", key=project.api_key, query={"include_deleted": "true", "limit": "200"}
    )
    return next(i for i in items.body["items"] if i["id"] == session_id)["teardown"]["state"]


def test_a_lost_send_is_recovered_by_the_sweeper(
    api: Api, project: Project, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    session = api.create(project)
    sandbox_for(project, session["id"], paused=True)
    missing_queue = teardown.queue_url.rsplit("/", 1)[0] + "/no-such-queue"
    reply = api.call(
        "DELETE",
        f"/v1/sessions/{session['id']}",
        key=project.api_key,
        env={"TEARDOWN_QUEUE_URL": missing_queue},
    )
    assert reply.status == 200 and teardown.depth() == 0
    teardown.sweep()  # inside the grace period: not this one
    teardown.drain()
    assert teardown_state(api, project, session["id"]) == "pending"
    assert len(remaining(e2b_env, project, session["id"])) == 1
    teardown.sweep(env={"TEARDOWN_GRACE_SECONDS": "0"})  # past it (with whatever else is pending)
    assert all(not r.failed_ids for r in teardown.drain(rounds=50))
    assert teardown_state(api, project, session["id"]) == "done"
    assert remaining(e2b_env, project, session["id"]) == []


def test_batch_item_failures_list_exactly_the_poison_record_which_reaches_the_dlq(
    api: Api, project: Project, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    session = api.create(project)
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    poison = teardown.send_raw('{"not": "a teardown"}')
    first = teardown.poll()
    assert first.received == 2 and first.failed_ids == [poison]
    for _ in range(6):  # maxReceiveCount is 5
        teardown.expire_visibility()
        teardown.poll()
    assert teardown.depth() == 0
    dead = teardown.sqs.receive_message(QueueUrl=teardown.dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["MessageId"] for m in dead] == [poison]


def test_a_retried_tombstone_write_is_idempotent_per_request(
    api: Api, project: Project, invoker: Any, teardown: TeardownPipeline
) -> None:
    """What the SDK does when DynamoDB applied the write but the reply was lost: the same request, again.
    It must still succeed (not turn the DELETE into a 404); another request must lose."""
    from session_service.runtime import container_for
    from session_service.settings import Settings

    session = api.create(project)
    store = container_for(Settings.from_env(invoker.env_for("DeleteSessionFunction"))).store
    args = (project.project_id, session["id"], "2026-11-21T00:00:00.000000Z", 1)
    assert store.tombstone(*args, request_token="request-a") is True
    assert store.tombstone(*args, request_token="request-a") is True  # the retry of the same request
    assert store.tombstone(*args, request_token="request-b") is False  # any other DELETE: already deleted
    assert api.call("GET", f"/v1/sessions/{session['id']}", key=project.api_key).status == 404
