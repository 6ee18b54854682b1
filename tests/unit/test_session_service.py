from concurrent.futures import ThreadPoolExecutor

import pytest

from fakes import P1, P2, FakeCache, FakeSessionStore
from session_service.domain import clock
from session_service.domain.errors import NotFound, ValidationFailed, VersionConflict
from session_service.domain.requests import CreateSessionRequest, ListSessionsParams, UpdateSessionRequest
from session_service.services.sessions import SessionService


def create(service: SessionService, project: str = P1, **fields: object) -> dict:
    session, _ = service.create(project, CreateSessionRequest.model_validate({"user_id": "u1", **fields}))
    return session.to_api()


def test_create_returns_a_new_session_with_version_one(service: SessionService) -> None:
    body = create(service, config={"model": "x"}, metadata={"k": "v"})
    assert body["id"].startswith("ses_") and len(body["id"]) == 30
    assert body["version"] == 1 and body["config"] == {"model": "x"} and body["metadata"] == {"k": "v"}
    assert body["created_at"] == body["updated_at"] and body["created_at"].endswith("Z")


def test_create_with_a_live_tag_returns_the_existing_session(service: SessionService) -> None:
    first, created_first = service.create(P1, CreateSessionRequest(user_id="u1", tag="chat-1"))
    again, created_again = service.create(P1, CreateSessionRequest(user_id="u2", tag="chat-1"))
    assert created_first and not created_again
    assert again.session_id == first.session_id


def test_tags_are_per_project(service: SessionService) -> None:
    a, _ = service.create(P1, CreateSessionRequest(user_id="u1", tag="t"))
    b, created = service.create(P2, CreateSessionRequest(user_id="u1", tag="t"))
    assert created and a.session_id != b.session_id


def test_a_dead_tag_owner_is_replaced(service: SessionService, store: FakeSessionStore) -> None:
    old, _ = service.create(P1, CreateSessionRequest(user_id="u1", tag="t"))
    store.mark_deleted(P1, old.session_id, "2026-01-01T00:00:00.000000Z")
    new, created = service.create(P1, CreateSessionRequest(user_id="u1", tag="t"))
    assert created and new.session_id != old.session_id
    assert store.tag_owner(P1, "t") == new.session_id


def test_concurrent_creates_with_one_tag_yield_one_session(
    service: SessionService, store: FakeSessionStore
) -> None:
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda _: service.create(P1, CreateSessionRequest(user_id="u", tag="race")), range(64))
        )
    assert len({s.session_id for s, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert len(store.sessions) == 1


def test_get_reads_through_the_cache(
    service: SessionService, store: FakeSessionStore, cache: FakeCache
) -> None:
    body = create(service)
    assert service.get(P1, body["id"]) == body
    assert cache.body(P1, body["id"]) == (1, body)
    store.sessions.clear()  # a second read is served by the cache alone
    assert service.get(P1, body["id"]) == body


def test_get_of_another_projects_session_is_not_found(service: SessionService) -> None:
    body = create(service, project=P1)
    with pytest.raises(NotFound):
        service.get(P2, body["id"])


@pytest.mark.parametrize("bad_id", ["nope", "ses_", "ses_" + "I" * 26, "../etc", ""])
def test_get_of_a_malformed_id_is_not_found(service: SessionService, bad_id: str) -> None:
    with pytest.raises(NotFound):
        service.get(P1, bad_id)


def test_get_of_a_deleted_session_is_not_found_and_tombstones_the_cache(
    service: SessionService, store: FakeSessionStore, cache: FakeCache
) -> None:
    body = create(service)
    store.mark_deleted(P1, body["id"], "2026-01-01T00:00:00.000000Z")
    with pytest.raises(NotFound):
        service.get(P1, body["id"])
    assert cache.entries[(P1, body["id"])] == "!"


def test_get_works_with_the_cache_down(service: SessionService, cache: FakeCache) -> None:
    cache.down = True
    body = create(service)
    assert service.get(P1, body["id"]) == body


def test_update_replaces_given_fields_bumps_version_and_refreshes_cache(
    service: SessionService, store: FakeSessionStore, cache: FakeCache
) -> None:
    body = create(service, config={"a": 1}, metadata={"m": 1})
    service.get(P1, body["id"])  # warm the cache with version 1
    updated = service.update(P1, body["id"], UpdateSessionRequest(metadata={"m": 2}))
    assert updated.version == 2 and updated.metadata == {"m": 2} and updated.config == {"a": 1}
    assert service.get(P1, body["id"])["version"] == 2
    assert [h[2] for h in store.config_history] == [1]  # metadata-only change: no config history entry


def test_update_with_config_appends_config_history(service: SessionService, store: FakeSessionStore) -> None:
    body = create(service, config={"a": 1})
    service.update(P1, body["id"], UpdateSessionRequest(config={"a": 2}))
    service.update(P1, body["id"], UpdateSessionRequest(config={"a": 3}))
    assert [(h[2], h[3]) for h in store.config_history] == [(1, {"a": 1}), (2, {"a": 2}), (3, {"a": 3})]


def test_update_with_a_stale_expected_version_conflicts_and_changes_nothing(
    service: SessionService, store: FakeSessionStore
) -> None:
    body = create(service)
    service.update(P1, body["id"], UpdateSessionRequest(metadata={"x": 1}, expected_version=1))
    with pytest.raises(VersionConflict):
        service.update(P1, body["id"], UpdateSessionRequest(metadata={"x": 2}, expected_version=1))
    assert store.get(P1, body["id"]).metadata == {"x": 1}  # type: ignore[union-attr]


def test_a_stale_fill_cannot_overwrite_a_newer_version(service: SessionService, cache: FakeCache) -> None:
    body = create(service)
    v1 = service._load_live(P1, body["id"])  # what a slow reader read before the PATCH
    service.update(P1, body["id"], UpdateSessionRequest(metadata={"new": True}))
    cache.fill(v1, as_of_ms=clock.now_ms())  # the slow reader's fill arrives late
    assert service.get(P1, body["id"])["version"] == 2


def test_update_of_another_projects_session_is_not_found(
    service: SessionService, store: FakeSessionStore
) -> None:
    body = create(service, project=P1)
    with pytest.raises(NotFound):
        service.update(P2, body["id"], UpdateSessionRequest(metadata={"x": 1}))
    assert store.get(P1, body["id"]).version == 1  # type: ignore[union-attr]


def test_list_rejects_a_bad_changed_since(service: SessionService) -> None:
    with pytest.raises(ValidationFailed):
        service.list(P1, ListSessionsParams(changed_since="yesterday"))


def test_list_pages_newest_first(service: SessionService) -> None:
    ids = [create(service)["id"] for _ in range(5)]
    first = service.list(P1, ListSessionsParams(limit=2))
    assert [s.session_id for s in first.items] == ids[::-1][:2]


def test_a_patch_whose_cache_write_fails_is_never_read_back_old(
    service: SessionService, store: FakeSessionStore, cache: FakeCache
) -> None:
    """The lost invalidation: the cache still holds v1 and comes back after the PATCH; v1 is not served."""
    body = create(service)
    service.get(P1, body["id"])  # v1 cached
    cache.down = True
    service.update(P1, body["id"], UpdateSessionRequest(metadata={"new": True}))
    cache.down = False  # the old entry is still there...
    assert cache.body(P1, body["id"])[0] == 1  # type: ignore[index]
    assert service.get(P1, body["id"])["version"] == 2  # ...and not served
    assert cache.body(P1, body["id"])[0] == 2  # type: ignore[index]  # the read refilled the new version
