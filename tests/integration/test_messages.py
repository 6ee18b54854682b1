"""A session's messages through the local API Gateway and the route functions, against moto and redis:
gap-free seqs under concurrent appends, idempotency by local_id (also racing), paging both ways, the fence
against a racing DELETE, activity tracking, and the cascade that purges a large conversation over runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline


def append(
    api: Api, project: Project, session_id: str, content: Any, local_id: str | None = None, **kw: Any
) -> Any:
    body = {"content": content, **({"local_id": local_id} if local_id else {})}
    return api.call(
        "POST",
        f"/v1/sessions/{session_id}/messages",
        key=kw.get("key", project.api_key),
        token=kw.get("token"),
        body=body,
    )


def page(api: Api, project: Project, session_id: str, **query: str) -> Any:
    return api.call("GET", f"/v1/sessions/{session_id}/messages", key=project.api_key, query=query)


def test_appends_get_seqs_1_to_n_without_gaps_under_20_concurrent_writers(api: Api, project: Project) -> None:
    session = api.create(project)
    with ThreadPoolExecutor(max_workers=20) as pool:
        replies = list(pool.map(lambda n: append(api, project, session["id"], {"n": n}), range(30)))
    assert all(reply.status == 201 for reply in replies), [r.body for r in replies if r.status != 201][:3]
    assert sorted(reply.body["seq"] for reply in replies) == list(range(1, 31))
    listed = page(api, project, session["id"], limit="200").body
    assert [m["seq"] for m in listed["items"]] == list(range(1, 31)) and listed["has_more"] is False
    assert {m["content"]["n"] for m in listed["items"]} == set(range(30))


def test_the_same_local_id_returns_the_original_also_when_racing(api: Api, project: Project) -> None:
    session = api.create(project)
    first = append(api, project, session["id"], "hello", local_id="client-1")
    assert first.status == 201 and first.body["seq"] == 1 and first.body["local_id"] == "client-1"
    again = append(api, project, session["id"], "hello (retried)", local_id="client-1")
    assert again.status == 200 and again.body == first.body
    with ThreadPoolExecutor(max_workers=20) as pool:
        racing = list(
            pool.map(lambda _: append(api, project, session["id"], "race", local_id="client-2"), range(20))
        )
    assert sorted(reply.status for reply in racing) == [200] * 19 + [201]
    assert len({reply.body["id"] for reply in racing}) == 1 and racing[0].body["seq"] == 2
    assert append(api, project, session["id"], "next").body["seq"] == 3  # no seq was burned
    assert [m["seq"] for m in page(api, project, session["id"]).body["items"]] == [1, 2, 3]


def test_paging_forward_and_back(api: Api, project: Project) -> None:
    session = api.create(project)
    for n in range(1, 11):
        append(api, project, session["id"], n)
    forward = page(api, project, session["id"], after_seq="3", limit="4").body
    assert [m["seq"] for m in forward["items"]] == [4, 5, 6, 7] and forward["has_more"] is True
    back = page(api, project, session["id"], before_seq="4", limit="5").body
    assert [m["seq"] for m in back["items"]] == [3, 2, 1] and back["has_more"] is False
    newest = page(api, project, session["id"], before_seq="11", limit="2").body
    assert [m["seq"] for m in newest["items"]] == [10, 9] and newest["has_more"] is True
    for query in (
        {"after_seq": "1", "before_seq": "5"},
        {"limit": "201"},
        {"after_seq": "-1"},
        {"sort": "x"},
    ):
        assert page(api, project, session["id"], **query).status == 422, query


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"content": 1, "extra": True},
        {"content": "x", "local_id": ""},
        {"content": "x", "local_id": "l" * 129},
    ],
)
def test_invalid_appends_are_422_and_store_nothing(api: Api, project: Project, body: dict) -> None:
    session = api.create(project)
    reply = api.call("POST", f"/v1/sessions/{session['id']}/messages", key=project.api_key, body=body)
    assert reply.status == 422
    assert page(api, project, session["id"]).body["items"] == []


def test_content_over_64_kib_is_413_and_64_kib_fits(api: Api, project: Project) -> None:
    session = api.create(project)
    assert append(api, project, session["id"], "x" * (64 * 1024 - 2)).status == 201  # 65536 bytes with quotes
    too_big = append(api, project, session["id"], "x" * (64 * 1024))
    assert too_big.status == 413 and too_big.body["error"]["code"] == "payload_too_large"
    assert len(page(api, project, session["id"]).body["items"]) == 1


def test_messages_are_404_for_another_project_and_after_delete(
    api: Api, project: Project, other_project: Project, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    token = api.call("POST", f"/v1/sessions/{session['id']}/tokens", key=project.api_key).body["token"]
    assert append(api, project, session["id"], "by token", key=None, token=token).status == 201
    assert append(api, other_project, session["id"], "intruder").status == 404
    assert page(api, other_project, session["id"]).status == 404
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    assert append(api, project, session["id"], "late").status == 404
    assert page(api, project, session["id"]).status == 404
    assert append(api, project, session["id"], "late", key=None, token=token).status == 404


def test_a_session_token_lists_its_own_sessions_messages_and_no_other_sessions(
    api: Api, project: Project, other_project: Project
) -> None:
    mine, sibling, foreign = api.create(project), api.create(project), api.create(other_project)
    tokens = {
        session["id"]: api.call("POST", f"/v1/sessions/{session['id']}/tokens", key=owner.api_key).body[
            "token"
        ]
        for session, owner in ((mine, project), (sibling, project), (foreign, other_project))
    }
    for text in ("one", "two"):
        assert append(api, project, mine["id"], text).status == 201
    assert append(api, project, sibling["id"], "the sibling's").status == 201

    def listed(session_id: str, token: str) -> Any:
        path = f"/v1/sessions/{session_id}/messages"
        return api.call("GET", path, key=None, token=token, query={"after_seq": "0"})

    own = listed(mine["id"], tokens[mine["id"]])
    assert own.status == 200
    assert [(m["seq"], m["content"]) for m in own.body["items"]] == [(1, "one"), (2, "two")]
    # Another session's token, of this project or another: as if the session did not exist.
    for other in (sibling["id"], foreign["id"]):
        refused = listed(mine["id"], tokens[other])
        assert refused.status == 404 and refused.body["error"]["code"] == "not_found", other
        assert "one" not in str(refused.body)
    assert listed(sibling["id"], tokens[mine["id"]]).status == 404


def test_an_append_racing_a_delete_lands_before_the_tombstone_or_is_404(
    api: Api, project: Project, teardown: TeardownPipeline
) -> None:
    for _ in range(5):
        session = api.create(project)
        with ThreadPoolExecutor(max_workers=9) as pool:
            appends = [pool.submit(append, api, project, session["id"], n) for n in range(8)]
            deleted = pool.submit(api.call, "DELETE", f"/v1/sessions/{session['id']}", key=project.api_key)
            statuses = [future.result().status for future in appends]
        assert deleted.result().status == 200
        assert set(statuses) <= {201, 404}
        landed = sorted(f.result().body["seq"] for f in appends if f.result().status == 201)
        assert landed == list(range(1, len(landed) + 1))  # what landed is gap-free; nothing landed after


def test_appends_and_executes_mark_the_session_active(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    quiet, chatty, working = api.create(project), api.create(project), api.create(project)
    append(api, project, chatty["id"], "hi")
    assert (
        api.call(
            "POST", f"/v1/sessions/{working['id']}/execute", key=project.api_key, body={"command": "true"}
        ).status
        == 200
    )
    active = api.call("GET", "/v1/sessions", key=project.api_key, query={"active": "true"}).body["items"]
    assert [item["id"] for item in active] == [working["id"], chatty["id"]]  # most recent first
    assert all(item["last_active_at"] for item in active)
    assert quiet["id"] not in [item["id"] for item in active]
    assert (
        api.call("GET", "/v1/sessions", key=project.api_key, query={"active": "true", "user_id": "u1"}).status
        == 422
    )


def test_the_cascade_purges_a_large_conversation_over_several_runs_and_keeps_audit(
    api: Api, project: Project, invoker: Any, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    from session_service.adapters.dynamodb.messages import message_sk
    from session_service.domain import keys
    from session_service.runtime import container_for
    from session_service.settings import Settings

    session = api.create(project, config={"model": "m"})
    for n in range(1, 6):  # through the route...
        append(api, project, session["id"], n, local_id=f"l{n}")
    # ...and 1,095 more as the store writes them, in batches (one by one through moto would take a minute).
    appender = container_for(Settings.from_env(invoker.env_for("AppendMessageFunction")))
    tables, cipher = appender.tables, appender.cipher
    M, partition = tables.MessageItem, keys.audit_partition(project.project_id, session["id"])
    with M.batch_write() as batch:
        for seq in range(6, 1101):
            batch.save(
                M(
                    session_key=partition,
                    sk=message_sk(seq),
                    seq=seq,
                    message_id=f"msg_{seq}",
                    sealed_content=cipher.seal(project.project_id, session["id"], f"message:msg_{seq}", seq),
                    created_at="2026-11-23T00:00:00.000000Z",
                    project_id=project.project_id,
                    session_id=session["id"],
                )
            )
        batch.save(M(session_key=partition, sk="#counter", last_seq=1100))
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    runs = teardown.drain(rounds=10)
    assert len(runs) >= 3  # 500 per run: a purge in batches, re-enqueued until done
    assert all(run.failed_ids == [] for run in runs)
    tombstone = next(
        item
        for item in api.call(
            "GET", "/v1/sessions", key=project.api_key, query={"include_deleted": "true"}
        ).body["items"]
        if item["id"] == session["id"]
    )
    assert tombstone["teardown"]["state"] == "done" and tombstone["teardown"]["messages_purged"] == 1100
    store = container_for(Settings.from_env(invoker.env_for("ListMessagesFunction"))).message_store
    assert store.page(project.project_id, session["id"], after_seq=0, before_seq=None, limit=10) == (
        [],
        False,
    )
    audit = container_for(Settings.from_env(invoker.env_for("CreateSessionFunction"))).store.audit_entries(
        project.project_id, session["id"]
    )
    assert [entry["kind"] for entry in audit] == ["config"]  # kept
