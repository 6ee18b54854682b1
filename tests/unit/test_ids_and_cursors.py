import time

import pytest

from session_service.adapters.dynamodb.session_listing import decode_cursor, encode_cursor
from session_service.domain import ids, keys
from session_service.domain.errors import BadRequest

P = "prj_01aaaaaaaaaaaaaaaaaaaaaaaa"


def test_session_ids_are_prefixed_unique_and_time_sortable() -> None:
    made = []
    for _ in range(5):
        made.append(ids.new_session_id())
        time.sleep(0.002)
    assert all(ids.is_session_id(i) for i in made)
    assert made == sorted(made)
    assert len({ids.new_session_id() for _ in range(10_000)}) == 10_000


def test_a_cursor_carries_only_the_last_key_never_a_partition() -> None:
    sid = ids.new_session_id()
    cursor = encode_cursor("project", sid)
    assert P not in cursor and "prj_" not in cursor
    assert decode_cursor("project", cursor) == sid


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24", "eyJtIjoicCIsImsiOiJ4In0"])
def test_garbage_cursors_are_bad_requests(cursor: str) -> None:
    with pytest.raises(BadRequest):
        decode_cursor("project", cursor)


def test_a_cursor_from_another_listing_is_rejected() -> None:
    sid = ids.new_session_id()
    with pytest.raises(BadRequest):
        decode_cursor("user", encode_cursor("project", sid))
    changed = encode_cursor("changed", keys.updated_key("2026-01-01T00:00:00.000000Z", sid), "2026-01-01")
    with pytest.raises(BadRequest):
        decode_cursor("changed", changed, "2025-01-01")  # another changed_since


def test_session_shards_are_stable_and_spread_every_projects_sessions() -> None:
    made = [ids.new_session_id() for _ in range(2000)]
    partitions = {keys.session_partition(P, sid) for sid in made}
    assert partitions == set(keys.project_partitions(P))  # every shard gets sessions
    counts = [sum(keys.session_partition(P, sid) == p for sid in made) for p in partitions]
    assert max(counts) < 2 * 2000 / keys.SESSION_SHARDS  # and none gets twice its share
    assert keys.session_partition(P, made[0]) == keys.session_partition(P, made[0])
    assert all(p.startswith(P + "#") for p in partitions)  # the project stays in every key
