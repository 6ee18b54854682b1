"""Session tokens through the local API Gateway (both authorizers) and the route functions: a token reaches
its own session's routes and nothing else, expires, and dies with its session (at once, and purged by
teardown with the audit entry kept)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline
from session_service.domain import keys
from session_service.domain.clock import parse_iso
from session_service.domain.entities import TokenRecord
from session_service.domain.ids import hash_key
from session_service.runtime import container_for
from session_service.services.tokens import generate_token
from session_service.settings import Settings


def mint(api: Api, project: Project, session_id: str, **body: Any) -> Any:
    return api.call("POST", f"/v1/sessions/{session_id}/tokens", key=project.api_key, body=body or None)


def token_store(invoker: Any) -> Any:
    return container_for(Settings.from_env(invoker.env_for("CreateTokenFunction"))).token_store


def test_a_token_reaches_its_session_and_nothing_else(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    mine, other = api.create(project), api.create(project)
    reply = mint(api, project, mine["id"], ttl_s=600)
    assert reply.status == 201 and reply.body["token"].startswith("sst_") and reply.body["expires_at"]
    token = reply.body["token"]
    assert api.call("GET", f"/v1/sessions/{mine['id']}", key=None, token=token).body == mine
    run = api.call(
        "POST", f"/v1/sessions/{mine['id']}/execute", key=None, token=token, body={"command": "echo hi"}
    )
    assert run.status == 200 and run.body["stdout"] == "hi\n"
    # Another session of the same project: as if it did not exist.
    assert api.call("GET", f"/v1/sessions/{other['id']}", key=None, token=token).status == 404
    run_other = api.call(
        "POST", f"/v1/sessions/{other['id']}/execute", key=None, token=token, body={"command": "x"}
    )
    assert run_other.status == 404
    # Project routes and the session's own writes are not a token's: 401, and nothing changes.
    assert api.call("GET", "/v1/sessions", key=None, token=token).status == 401
    assert api.call("POST", "/v1/sessions", key=None, token=token, body={"user_id": "u"}).status == 401
    patch = api.call(
        "PATCH", f"/v1/sessions/{mine['id']}", key=None, token=token, body={"metadata": {"x": 1}}
    )
    assert patch.status == 401
    assert api.call("DELETE", f"/v1/sessions/{mine['id']}", key=None, token=token).status == 401
    assert mint(api, project, mine["id"]).status == 201  # the key can; a token cannot mint tokens:
    assert api.call("POST", f"/v1/sessions/{mine['id']}/tokens", key=None, token=token).status == 401
    assert api.call("GET", f"/v1/sessions/{mine['id']}", key=project.api_key).body == mine  # unchanged


def test_minting_needs_a_live_session_of_the_callers_project(
    api: Api, project: Project, other_project: Project, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    assert mint(api, other_project, session["id"]).status == 404
    assert mint(api, project, "ses_01aaaaaaaaaaaaaaaaaaaaaaaa").status == 404
    assert mint(api, project, "not-a-session").status == 404
    for ttl in (59, 86_401, "3600", 1.5):
        reply = mint(api, project, session["id"], ttl_s=ttl)
        assert reply.status == 422 and reply.body["error"]["code"] == "validation_error", ttl
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    assert mint(api, project, session["id"]).status == 404


@pytest.mark.parametrize("body", [None, {}], ids=["no-body", "empty-body"])
def test_a_token_minted_without_a_ttl_expires_in_an_hour(
    api: Api, project: Project, invoker: Any, body: dict | None
) -> None:
    session = api.create(project)
    before = time.time()
    reply = api.call("POST", f"/v1/sessions/{session['id']}/tokens", key=project.api_key, body=body)
    after = time.time()
    assert reply.status == 201
    expires_at = parse_iso(reply.body["expires_at"]).timestamp()
    assert before + 3600 <= expires_at <= after + 3600
    stored = token_store(invoker).get_by_hash(hash_key(reply.body["token"]))
    assert stored is not None and stored.expires_at == int(expires_at)  # the table's TTL attribute


@pytest.mark.parametrize(
    "authorization",
    ["Bearer sst_nope", "Bearer " + "sst_0123456789ab_" + "A" * 43, "Basic abc", "Bearer"],
    ids=["malformed", "unknown", "not-bearer", "empty"],
)
def test_bad_tokens_are_401_json(api: Api, project: Project, authorization: str) -> None:
    session = api.create(project)
    reply = api.call(
        "GET", f"/v1/sessions/{session['id']}", key=None, headers={"authorization": authorization}
    )
    assert reply.status == 401 and reply.body["error"]["code"] == "unauthorized"


def test_an_expired_token_is_401(api: Api, project: Project, invoker: Any) -> None:
    session = api.create(project)
    token_id, token = generate_token()
    past = int(time.time()) - 1
    record = TokenRecord(
        hash_key(token), token_id, project.project_id, session["id"], "2026-01-01T00:00:00Z", past
    )
    assert token_store(invoker).issue(record)
    reply = api.call("GET", f"/v1/sessions/{session['id']}", key=None, token=token)
    assert reply.status == 401 and "expired" in reply.body["error"]["message"]


def test_a_deleted_sessions_tokens_stop_at_once_and_teardown_purges_them(
    api: Api, project: Project, invoker: Any, teardown: TeardownPipeline, e2b_env: Any
) -> None:
    session = api.create(project)
    token = mint(api, project, session["id"]).body["token"]
    assert api.call("GET", f"/v1/sessions/{session['id']}", key=None, token=token).status == 200
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    assert api.call("GET", f"/v1/sessions/{session['id']}", key=None, token=token).status == 404
    run = api.call(
        "POST", f"/v1/sessions/{session['id']}/execute", key=None, token=token, body={"command": "x"}
    )
    assert run.status == 404
    assert token_store(invoker).get_by_hash(hash_key(token)) is not None  # until teardown...
    assert [r.failed_ids for r in teardown.drain()] == [[]]
    assert token_store(invoker).get_by_hash(hash_key(token)) is None  # ...which purges it
    assert api.call("GET", f"/v1/sessions/{session['id']}", key=None, token=token).status == 401
    store = container_for(Settings.from_env(invoker.env_for("ExecuteFunction"))).store
    audit = [e for e in store.audit_entries(project.project_id, session["id"]) if e["kind"] == "token"]
    assert len(audit) == 1 and token not in str(audit) and hash_key(token) not in str(audit)
    assert keys.audit_partition(project.project_id, session["id"]) == audit[0]["session_key"]
