"""Listing on the sharded keys (session_service.domain.keys): a project whose sessions span every shard lists
newest first with stable paging, by user and by change time too, tombstones included when asked, and the
sweeper finds pending teardowns in every shard of its index. Sessions are made through the service (the
route's own code without its HTTP edge) to keep the suite fast; listing goes through the route."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline
from session_service.domain import keys
from session_service.domain.requests import CreateSessionRequest
from session_service.runtime import container_for
from session_service.settings import Settings

SESSIONS = 40


def page_through(api: Api, project: Project, limit: int, **query: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(200):
        params = {"limit": str(limit), **query, **({"cursor": cursor} if cursor else {})}
        reply = api.call("GET", "/v1/sessions", key=project.api_key, query=params)
        assert reply.status == 200, reply.body
        assert len(reply.body["items"]) <= limit
        seen += reply.body["items"]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError("paging did not end")


def spread_over_every_shard(invoker: Any, project: Project) -> list[dict[str, Any]]:
    """At least SESSIONS sessions of two users, and more until every shard of the project holds some."""
    service = container_for(Settings.from_env(invoker.env_for("CreateSessionFunction"))).sessions
    created: list[dict[str, Any]] = []
    shards: set[str] = set()
    while len(created) < SESSIONS or len(shards) < keys.SESSION_SHARDS:
        assert len(created) < 400
        request = CreateSessionRequest(user_id=f"user-{len(created) % 2}")
        session, _ = service.create(project.project_id, request)
        created.append(session.to_api())
        shards.add(keys.session_partition(project.project_id, session.session_id))
    return created


@pytest.fixture(scope="module")
def shared(admin: Any, invoker: Any) -> tuple[Project, list[dict[str, Any]]]:
    """One project for the read-only tests of this module."""
    created = admin.create_project("shards")
    project = Project(created.project_id, admin.issue_key(created.project_id).api_key)
    return project, spread_over_every_shard(invoker, project)


@pytest.mark.parametrize("limit", [7, 200])
def test_a_project_spanning_every_shard_pages_newest_first_without_gaps_or_repeats(
    api: Api, shared: tuple[Project, list[dict[str, Any]]], limit: int
) -> None:
    project, spread = shared
    listed = [item["id"] for item in page_through(api, project, limit)]
    assert listed == sorted((session["id"] for session in spread), reverse=True)


def test_a_users_sessions_page_across_the_shards(
    api: Api, shared: tuple[Project, list[dict[str, Any]]]
) -> None:
    project, spread = shared
    listed = [item["id"] for item in page_through(api, project, 5, user_id="user-1")]
    assert listed == sorted((s["id"] for s in spread if s["user_id"] == "user-1"), reverse=True)


def test_changed_since_pages_across_the_shards_and_includes_deletions(
    api: Api, project: Project, invoker: Any, teardown: TeardownPipeline
) -> None:
    spread = spread_over_every_shard(invoker, project)
    half = len(spread) // 2
    since = spread[half]["created_at"]
    patched, deleted = spread[0], spread[1]
    api.call("PATCH", f"/v1/sessions/{patched['id']}", key=project.api_key, body={"metadata": {"late": 1}})
    assert api.call("DELETE", f"/v1/sessions/{deleted['id']}", key=project.api_key).status == 200
    listed = page_through(api, project, 4, changed_since=since)
    changed = {s["id"] for s in spread[half:]} | {patched["id"], deleted["id"]}
    assert {item["id"] for item in listed} == changed
    assert len(listed) == len(changed)  # each once, though the PATCH and DELETE moved them in the index
    times = [item["updated_at"] for item in listed]
    assert times == sorted(times, reverse=True)
    assert next(item for item in listed if item["id"] == deleted["id"])["deleted"] is True


def test_tombstones_are_skipped_across_shards_unless_asked(
    api: Api, project: Project, invoker: Any, teardown: TeardownPipeline
) -> None:
    store = container_for(Settings.from_env(invoker.env_for("DeleteSessionFunction"))).store
    spread = spread_over_every_shard(invoker, project)
    doomed = spread[::3]
    for session in doomed:  # the DELETE's write, without its teardown message
        assert store.tombstone(
            project.project_id, session["id"], "2026-01-01T00:00:00.000000Z", 2**40, request_token="t"
        )
    live = [item["id"] for item in page_through(api, project, 6)]
    assert live == sorted((s["id"] for s in spread if s not in doomed), reverse=True)
    assert len(page_through(api, project, 6, include_deleted="true")) == len(spread)


def test_the_sweeper_finds_pending_teardowns_in_every_shard(
    project: Project, invoker: Any, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    service = container_for(Settings.from_env(invoker.env_for("CreateSessionFunction"))).sessions
    store = container_for(Settings.from_env(invoker.env_for("DeleteSessionFunction"))).store
    doomed: list[str] = []
    while {keys.pending_partition(sid) for sid in doomed} != set(keys.pending_partitions()):
        assert len(doomed) < 1000
        session, _ = service.create(project.project_id, CreateSessionRequest(user_id="u"))
        # The DELETE's write, without its teardown message: only the sweeper can find these.
        assert store.tombstone(
            project.project_id, session.session_id, "2026-01-01T00:00:00.000000Z", 2**40, request_token="t"
        )
        doomed.append(session.session_id)
    assert teardown.sweep(env={"TEARDOWN_GRACE_SECONDS": "0"})["reenqueued"] >= len(doomed)
    sent = set()
    while messages := teardown.sqs.receive_message(QueueUrl=teardown.queue_url, MaxNumberOfMessages=10).get(
        "Messages", []
    ):
        sent |= {json.loads(message["Body"])["session_id"] for message in messages}
    assert set(doomed) <= sent
