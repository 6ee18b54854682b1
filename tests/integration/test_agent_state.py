"""Agent state beside metadata (issue 28): its own version, one conditional write, on the feed, shredded.

Over the real local services: the route functions in process, moto over HTTP, redis-server, the local
WebSocket API with a real client, and teardown driven by its SQS pipeline.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from websockets.sync.client import connect

from plugins.api import Api, Project
from plugins.streams import StreamPipeline
from plugins.teardown import TeardownPipeline
from session_service.domain import clock
from session_service.domain.errors import KeyDestroyed
from session_service.runtime import container_for
from session_service.settings import Settings


def put(api: Api, project: Project, sid: str, state: Any, expected: int, **kw: Any) -> Any:
    body = {"agent_state": state, "expected_version": expected}
    return api.call(
        "PUT", f"/v1/sessions/{sid}/agent-state", key=kw.pop("key", project.api_key), body=body, **kw
    )


def token_for(api: Api, project: Project, sid: str) -> str:
    reply = api.call("POST", f"/v1/sessions/{sid}/tokens", key=project.api_key, body={"ttl_s": 600})
    assert reply.status == 201, reply.body
    return str(reply.body["token"])


def test_a_put_sets_the_state_and_its_version_and_leaves_version_alone(api: Api, project: Project) -> None:
    session = api.create(project, metadata={"owner": "ana"})
    sid = session["id"]
    assert (session["agent_state"], session["agent_state_version"], session["version"]) == (None, 0, 1)
    assert put(api, project, sid, {"step": "plan"}, 0).body == {"agent_state_version": 1}
    assert put(api, project, sid, "an opaque string", 1).body == {"agent_state_version": 2}
    got = api.call("GET", f"/v1/sessions/{sid}", key=project.api_key).body
    assert (got["agent_state"], got["agent_state_version"], got["version"]) == ("an opaque string", 2, 1)
    assert got["metadata"] == {"owner": "ana"}
    listed = api.call("GET", "/v1/sessions", key=project.api_key, query={"user_id": "u1"}).body["items"]
    assert next(item for item in listed if item["id"] == sid)["agent_state_version"] == 2


def test_a_put_is_a_change_that_changed_since_catches_up_with(api: Api, project: Project) -> None:
    sid = api.create(project)["id"]
    time.sleep(0.01)
    mark = clock.utc_now_iso()  # after the create: only a later change lists the session
    listed = api.call("GET", "/v1/sessions", key=project.api_key, query={"changed_since": mark}).body
    assert sid not in [item["id"] for item in listed["items"]]
    assert put(api, project, sid, {"step": "later"}, 0).status == 200
    assert api.call("GET", f"/v1/sessions/{sid}", key=project.api_key).body["updated_at"] > mark
    listed = api.call("GET", "/v1/sessions", key=project.api_key, query={"changed_since": mark}).body
    assert sid in [item["id"] for item in listed["items"]]


def test_a_stale_version_is_409_with_the_current_one_and_nothing_changes(api: Api, project: Project) -> None:
    sid = api.create(project, agent_state={"born": True})["id"]
    stale = put(api, project, sid, {"lost": True}, 0)
    assert stale.status == 409
    assert stale.body["error"]["details"] == [{"current_version": 1}]
    got = api.call("GET", f"/v1/sessions/{sid}", key=project.api_key).body
    assert (got["agent_state"], got["agent_state_version"]) == ({"born": True}, 1)


@pytest.mark.parametrize(
    "body",
    [
        {"agent_state": {}},  # no expected_version
        {"expected_version": 0},  # no agent_state
        {"agent_state": 1, "expected_version": -1},
        {"agent_state": 1, "expected_version": "0"},
        {"agent_state": 1, "expected_version": 0, "extra": True},
        {"agent_state": "x" * (64 * 1024), "expected_version": 0},  # over 64 KiB serialized
    ],
)
def test_invalid_bodies_are_422_and_change_nothing(api: Api, project: Project, body: dict) -> None:
    sid = api.create(project)["id"]
    reply = api.call("PUT", f"/v1/sessions/{sid}/agent-state", key=project.api_key, body=body)
    assert reply.status == 422, reply.body
    assert api.call("GET", f"/v1/sessions/{sid}", key=project.api_key).body["agent_state_version"] == 0


def test_twenty_concurrent_writers_one_wins_each_version_and_versions_have_no_gap(
    api: Api, project: Project
) -> None:
    sid = api.create(project)["id"]
    wins: list[tuple[int, int]] = []

    def writer(n: int) -> None:
        expected = 0
        for _ in range(40):
            reply = put(api, project, sid, {"writer": n}, expected)
            if reply.status == 200:
                wins.append((reply.body["agent_state_version"], n))
                return
            assert reply.status == 409, reply.body
            expected = reply.body["error"]["details"][0]["current_version"]
        raise AssertionError(f"writer {n} never won")

    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(writer, range(20)))
    versions = sorted(version for version, _ in wins)
    assert versions == list(range(1, 21))  # one winner per version, no gap, no version twice
    got = api.call("GET", f"/v1/sessions/{sid}", key=project.api_key).body
    last_writer = dict(wins)[20]
    assert (got["agent_state_version"], got["agent_state"]) == (20, {"writer": last_writer})
    assert got["version"] == 1


def test_a_metadata_patch_and_an_agent_state_put_race_without_a_409(api: Api, project: Project) -> None:
    sid = api.create(project)["id"]

    def person(n: int) -> int:
        return api.call(
            "PATCH", f"/v1/sessions/{sid}", key=project.api_key, body={"metadata": {"n": n}}
        ).status

    def agent(n: int) -> int:
        return put(api, project, sid, {"n": n}, n).status

    statuses = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for n in range(10):
            statuses += [f.result() for f in [pool.submit(person, n), pool.submit(agent, n)]]
    assert set(statuses) == {200}, statuses
    got = api.call("GET", f"/v1/sessions/{sid}", key=project.api_key).body
    assert (got["version"], got["agent_state_version"]) == (11, 10)
    assert (got["metadata"], got["agent_state"]) == ({"n": 9}, {"n": 9})  # the cache serves both writes


def test_a_session_token_may_write_its_own_session_only(api: Api, project: Project) -> None:
    mine, other = api.create(project)["id"], api.create(project)["id"]
    token = token_for(api, project, mine)
    assert put(api, project, mine, {"by": "agent"}, 0, key=None, token=token).status == 200
    assert put(api, project, other, {"by": "agent"}, 0, key=None, token=token).status == 404
    assert api.call("GET", f"/v1/sessions/{other}", key=project.api_key).body["agent_state_version"] == 0


def test_another_projects_session_is_404_and_unchanged(
    api: Api, project: Project, other_project: Project
) -> None:
    sid = api.create(project)["id"]
    assert put(api, project, sid, 1, 0, key=other_project.api_key).status == 404
    assert api.call("GET", f"/v1/sessions/{sid}", key=project.api_key).body["agent_state_version"] == 0


def test_after_delete_it_is_404_and_teardown_shreds_the_state(
    api: Api, project: Project, invoker: Any, teardown: TeardownPipeline
) -> None:
    sid = api.create(project)["id"]
    assert put(api, project, sid, {"secret": "plan"}, 0).status == 200
    settings = Settings.from_env(invoker.env_for("GetSessionFunction"))
    process = container_for(settings)
    sealed = process.store.get(project.project_id, sid).sealed_agent_state
    assert sealed is not None and b"plan" not in sealed  # sealed at rest
    assert api.call("DELETE", f"/v1/sessions/{sid}", key=project.api_key).status == 200
    assert put(api, project, sid, {"after": "delete"}, 1).status == 404
    assert [run.failed_ids for run in teardown.drain()] == [[]]
    assert process.store.get(project.project_id, sid).sealed_agent_state is None  # purged
    fresh = container_for(settings.model_copy(update={"function_name": "after-teardown"}))
    with pytest.raises(KeyDestroyed):  # the copy a backup kept cannot be opened
        fresh.cipher.open(project.project_id, sid, "agent_state", sealed)


def test_the_feed_hears_session_agent_state_updated_with_the_version_only(
    api: Api, project: Project, websocket_gateway: Any, invoker: Any, local_resources: Any, moto_server: Any
) -> None:
    notifier = StreamPipeline(
        invoker, local_resources, moto_server.url, "NotifierFunction", table="SessionsTable"
    )
    sid = api.create(project)["id"]
    token = token_for(api, project, sid)
    with connect(f"{websocket_gateway.url}?token={token}", open_timeout=10) as client:
        assert put(api, project, sid, {"secret": "never on the feed"}, 0).status == 200
        notifier.drain()
        frames = [json.loads(client.recv(timeout=10)) for _ in range(2)]  # session.created first
    frame = frames[-1]
    assert [f["type"] for f in frames] == ["session.created", "session.agent_state_updated"]
    assert frame["session_id"] == sid
    assert frame["data"] == {"agent_state_version": 1}
    assert "never on the feed" not in json.dumps(frame)
