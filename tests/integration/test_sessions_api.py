"""The sessions API through its route functions (authorizer + handler, as the template wires them),
against a real moto server (DynamoDB) and a real redis-server."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from plugins.api import Api, Project

# --- authentication -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["not-a-key", "ssk_0123456789ab_" + "A" * 43],
    ids=["malformed", "unknown"],
)
def test_requests_without_a_valid_key_are_401_json(api: Api, key: str) -> None:
    reply = api.call("GET", "/v1/sessions", key=key)
    assert reply.status == 401
    assert reply.body["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("key", [None, ""], ids=["missing", "empty"])
def test_requests_without_a_key_never_reach_the_authorizer(api: Api, key: str | None) -> None:
    """API Gateway's own answer (its identity source is absent): the local gateway gives the same."""
    assert (
        api.call("GET", "/v1/sessions", key=key).status,
        api.call("GET", "/v1/sessions", key=key).body,
    ) == (
        401,
        {"message": "Unauthorized"},
    )


def test_a_revoked_key_is_401(api: Api, admin, project: Project) -> None:
    assert api.call("GET", "/v1/sessions", key=project.api_key).status == 200
    key_id = project.api_key.split("_")[1]
    admin.revoke_key(project.project_id, key_id)
    reply = api.call("GET", "/v1/sessions", key=project.api_key)
    assert reply.status == 401 and "revoked" in reply.body["error"]["message"]


# --- create ---------------------------------------------------------------------------------------------


def test_create_then_get(api: Api, project: Project) -> None:
    created = api.create(project, config={"template": "base"}, metadata={"channel": "slack"}, tag="t-1")
    assert set(created) == {
        "id",
        "user_id",
        "tag",
        "config",
        "metadata",
        "data_encryption_key",
        "agent_state",
        "agent_state_version",
        "version",
        "created_at",
        "updated_at",
        "last_active_at",
    }
    assert (created["agent_state"], created["agent_state_version"]) == (None, 0)
    assert created["version"] == 1 and created["tag"] == "t-1" and created["last_active_at"] is None
    assert created["metadata"] == {"channel": "slack"} and created["data_encryption_key"] is None
    got = api.call("GET", f"/v1/sessions/{created['id']}", key=project.api_key)
    assert got.status == 200 and got.body == created


def test_create_with_a_live_tag_returns_the_same_session_with_200(api: Api, project: Project) -> None:
    first = api.create(project, tag="dup")
    again = api.call("POST", "/v1/sessions", key=project.api_key, body={"user_id": "u2", "tag": "dup"})
    assert again.status == 200 and again.body["id"] == first["id"]


def test_concurrent_creates_with_one_tag_yield_exactly_one_session(api: Api, project: Project) -> None:
    def attempt(_: int) -> tuple[int, str]:
        reply = api.call("POST", "/v1/sessions", key=project.api_key, body={"user_id": "u", "tag": "race"})
        return reply.status, reply.body["id"]

    with ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(attempt, range(48)))
    assert len({session_id for _, session_id in results}) == 1
    assert sorted(status for status, _ in results) == [200] * 47 + [201]
    listing = api.call("GET", "/v1/sessions", key=project.api_key, query={"limit": "200"})
    assert [item["tag"] for item in listing.body["items"]].count("race") == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"user_id": 7}, 422),
        ({"user_id": ""}, 422),
        ({"user_id": "u", "config": []}, 422),
        ({"user_id": "u", "metadata": "x"}, 422),
        ({"user_id": "u", "surprise": 1}, 422),
        ({"user_id": "u", "tag": "has spaces"}, 422),
        ([1, 2], 422),
    ],
)
def test_invalid_create_bodies_are_rejected_and_nothing_is_stored(
    api: Api, project: Project, body: object, status: int
) -> None:
    reply = api.call("POST", "/v1/sessions", key=project.api_key, body=body)
    assert reply.status == status
    assert reply.body["error"]["code"] == "validation_error" and reply.body["error"]["details"]
    assert api.call("GET", "/v1/sessions", key=project.api_key).body["items"] == []


def test_malformed_json_is_400_and_oversized_bodies_are_413(api: Api, project: Project) -> None:
    bad = api.call("POST", "/v1/sessions", key=project.api_key, raw_body='{"user_id": ')
    assert bad.status == 400 and bad.body["error"]["code"] == "bad_request"
    huge = json.dumps({"user_id": "u", "metadata": {"blob": "x" * 70_000}})
    big = api.call("POST", "/v1/sessions", key=project.api_key, raw_body=huge)
    assert big.status == 413 and big.body["error"]["code"] == "payload_too_large"
    assert api.call("GET", "/v1/sessions", key=project.api_key).body["items"] == []


# --- tenant isolation -----------------------------------------------------------------------------------


def test_another_projects_session_is_404_and_unchanged(
    api: Api, project: Project, other_project: Project
) -> None:
    mine = api.create(project, metadata={"owner": "me"})
    path = f"/v1/sessions/{mine['id']}"
    assert api.call("GET", path, key=other_project.api_key).status == 404
    patched = api.call("PATCH", path, key=other_project.api_key, body={"metadata": {"owner": "them"}})
    assert patched.status == 404 and patched.body["error"]["code"] == "not_found"
    assert api.call("GET", "/v1/sessions", key=other_project.api_key).body["items"] == []
    assert api.call("GET", path, key=project.api_key).body == mine


def test_unknown_and_malformed_ids_are_404(api: Api, project: Project) -> None:
    for session_id in ["ses_01jc0000000000000000000000", "nope"]:
        reply = api.call("GET", f"/v1/sessions/{session_id}", key=project.api_key)
        assert reply.status == 404 and reply.body == {
            "error": {"code": "not_found", "message": "session not found"}
        }


# --- list -----------------------------------------------------------------------------------------------


def test_list_is_newest_first_with_stable_cursor_pagination(api: Api, project: Project) -> None:
    made = [api.create(project, user_id=f"u{i % 2}")["id"] for i in range(7)]
    seen, cursor = [], None
    while True:
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = api.call("GET", "/v1/sessions", key=project.api_key, query=query)
        assert page.status == 200 and len(page.body["items"]) <= 3
        seen += [item["id"] for item in page.body["items"]]
        cursor = page.body["next_cursor"]
        if cursor is None:
            break
    assert seen == made[::-1]
    by_user = api.call("GET", "/v1/sessions", key=project.api_key, query={"user_id": "u1", "limit": "200"})
    assert [item["id"] for item in by_user.body["items"]] == [m for i, m in enumerate(made) if i % 2][::-1]


def test_list_changed_since_returns_only_later_changes(api: Api, project: Project) -> None:
    old = api.create(project)
    fresh = api.create(project)
    since = fresh["created_at"]
    api.call("PATCH", f"/v1/sessions/{old['id']}", key=project.api_key, body={"metadata": {"touched": True}})
    reply = api.call("GET", "/v1/sessions", key=project.api_key, query={"changed_since": since})
    assert reply.status == 200
    assert [item["id"] for item in reply.body["items"]] == [
        old["id"],
        fresh["id"],
    ]  # by updated_at, newest first
    later = api.call(
        "GET", "/v1/sessions", key=project.api_key, query={"changed_since": "2999-01-01T00:00:00Z"}
    )
    assert later.body == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "query",
    [{"limit": "0"}, {"limit": "201"}, {"limit": "ten"}, {"changed_since": "yesterday"}, {"bogus": "1"}],
)
def test_bad_list_parameters_are_422(api: Api, project: Project, query: dict[str, str]) -> None:
    reply = api.call("GET", "/v1/sessions", key=project.api_key, query=query)
    assert reply.status == 422 and reply.body["error"]["code"] == "validation_error"


def test_a_forged_cursor_is_400_and_cannot_reach_another_project(
    api: Api, project: Project, other_project: Project
) -> None:
    for _ in range(3):
        api.create(other_project)
    page = api.call("GET", "/v1/sessions", key=other_project.api_key, query={"limit": "1"})
    stolen = page.body["next_cursor"]
    assert stolen
    mine = api.call("GET", "/v1/sessions", key=project.api_key, query={"cursor": stolen})
    assert mine.status == 200 and mine.body["items"] == []
    garbage = api.call("GET", "/v1/sessions", key=project.api_key, query={"cursor": "!!notacursor"})
    assert garbage.status == 400 and garbage.body["error"]["code"] == "bad_request"


# --- update ---------------------------------------------------------------------------------------------


def test_patch_updates_bumps_version_and_get_sees_it_immediately(api: Api, project: Project) -> None:
    created = api.create(project, config={"a": 1})
    path = f"/v1/sessions/{created['id']}"
    assert api.call("GET", path, key=project.api_key).body["version"] == 1  # now cached
    patched = api.call("PATCH", path, key=project.api_key, body={"config": {"a": 2}, "expected_version": 1})
    assert patched.status == 200 and patched.body["version"] == 2 and patched.body["config"] == {"a": 2}
    assert patched.body["updated_at"] > created["updated_at"]
    assert api.call("GET", path, key=project.api_key).body == patched.body


def test_every_config_change_is_kept_in_the_audit_history(api: Api, project: Project, invoker) -> None:
    from session_service.runtime import container_for
    from session_service.settings import Settings

    created = api.create(project, config={"v": 1})
    path = f"/v1/sessions/{created['id']}"
    api.call("PATCH", path, key=project.api_key, body={"config": {"v": 2}})
    api.call("PATCH", path, key=project.api_key, body={"metadata": {"only": "metadata"}})
    api.call("PATCH", path, key=project.api_key, body={"config": {"v": 3}})
    store = container_for(Settings.from_env(invoker.env_for("UpdateSessionFunction"))).store
    history = [e for e in store.audit_entries(project.project_id, created["id"]) if e["kind"] == "config"]
    assert [(int(e["version"]), e["config"]) for e in history] == [
        (1, {"v": 1}),
        (2, {"v": 2}),
        (4, {"v": 3}),
    ]


def test_patch_with_a_stale_version_is_409_and_changes_nothing(api: Api, project: Project) -> None:
    created = api.create(project)
    path = f"/v1/sessions/{created['id']}"
    api.call("PATCH", path, key=project.api_key, body={"metadata": {"n": 1}})
    stale = api.call("PATCH", path, key=project.api_key, body={"metadata": {"n": 2}, "expected_version": 1})
    assert stale.status == 409 and stale.body["error"]["code"] == "version_conflict"
    assert api.call("GET", path, key=project.api_key).body["metadata"] == {"n": 1}


@pytest.mark.parametrize(
    "body",
    [{}, {"config": "x"}, {"expected_version": 1}, {"metadata": {}, "expected_version": "1"}, {"tag": "no"}],
)
def test_invalid_patches_are_422_and_change_nothing(api: Api, project: Project, body: dict) -> None:
    created = api.create(project)
    path = f"/v1/sessions/{created['id']}"
    reply = api.call("PATCH", path, key=project.api_key, body=body)
    assert reply.status == 422
    assert api.call("GET", path, key=project.api_key).body == created


def test_an_integral_json_number_is_an_integer(api: Api, project: Project) -> None:
    """JSON Schema, so the OpenAPI document, counts 2.0 as the integer 2; 2.5 and "2" stay refused."""
    created = api.create(project)
    path = f"/v1/sessions/{created['id']}"
    key = project.api_key
    patched = api.call("PATCH", path, key=key, body={"metadata": {"n": 1}, "expected_version": 1.0})
    assert patched.status == 200 and patched.body["version"] == 2
    for version in (2.5, "2"):
        refused = api.call("PATCH", path, key=key, body={"metadata": {}, "expected_version": version})
        assert refused.status == 422
        assert refused.body["error"]["details"][0]["loc"] == ["body", "expected_version"]
    assert api.call("GET", path, key=project.api_key).body == patched.body


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ('{"user_id": "u", "config": {"a": NaN}}', 400),
        ('{"user_id": "u", "config": {"a": Infinity}}', 400),
        ('{"user_id": "u", "config": {"a": -1e999}}', 422),  # valid JSON, but no double: was `-Infinity`
        ("[" * 5000 + "]" * 5000, 400),
        ('{"user_id": "u", "config": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}", 422),
    ],
    ids=["nan", "infinity", "overflowing-number", "deep-array", "deep-config"],
)
def test_hostile_json_is_a_clear_4xx_and_stores_nothing(
    api: Api, project: Project, raw: str, status: int
) -> None:
    reply = api.call("POST", "/v1/sessions", key=project.api_key, raw_body=raw)
    assert reply.status == status and reply.body["error"]["code"] in ("bad_request", "validation_error")
    assert api.call("GET", "/v1/sessions", key=project.api_key).body["items"] == []


def test_a_base64_body_that_is_not_utf8_is_400(api: Api, project: Project, invoker) -> None:
    import base64

    from plugins.api import sample_event

    event = sample_event("create_session.json")
    event["requestContext"]["authorizer"] = {"lambda": {"project_id": project.project_id}}
    event["body"] = base64.b64encode(b"\xff\xfe{not utf8").decode()
    event["isBase64Encoded"] = True
    result = invoker.invoke("CreateSessionFunction", event)
    assert result["statusCode"] == 400 and json.loads(result["body"])["error"]["code"] == "bad_request"


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_changed_since_at_the_edges_of_time_is_422(api: Api, project: Project, since: str) -> None:
    reply = api.call("GET", "/v1/sessions", key=project.api_key, query={"changed_since": since})
    assert reply.status == 422


def test_a_changed_since_cursor_only_continues_its_own_listing(api: Api, project: Project) -> None:
    first = api.create(project)
    for _ in range(3):
        api.create(project)
    since = first["created_at"]
    page = api.call("GET", "/v1/sessions", key=project.api_key, query={"changed_since": since, "limit": "2"})
    cursor = page.body["next_cursor"]
    assert page.status == 200 and cursor
    rest = api.call(
        "GET", "/v1/sessions", key=project.api_key, query={"changed_since": since, "cursor": cursor}
    )
    assert rest.status == 200 and len(rest.body["items"]) == 2
    other = api.call(
        "GET",
        "/v1/sessions",
        key=project.api_key,
        query={"changed_since": "2999-01-01T00:00:00Z", "cursor": cursor},
    )
    assert other.status == 400 and other.body["error"]["code"] == "bad_request"
