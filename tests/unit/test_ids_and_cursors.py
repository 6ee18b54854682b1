import time

import pytest

from session_service import ids
from session_service.adapters.dynamodb import decode_cursor, encode_cursor
from session_service.errors import BadRequest

P = "prj_01aaaaaaaaaaaaaaaaaaaaaaaa"


def test_session_ids_are_prefixed_unique_and_time_sortable() -> None:
    made = []
    for _ in range(5):
        made.append(ids.new_session_id())
        time.sleep(0.002)
    assert all(ids.is_session_id(i) for i in made)
    assert made == sorted(made)
    assert len({ids.new_session_id() for _ in range(10_000)}) == 10_000


def test_cursor_round_trip_rebuilds_the_partition_from_the_caller() -> None:
    sid = ids.new_session_id()
    cursor = encode_cursor("project", {"project_id": {"S": "prj_other"}, "session_id": {"S": sid}})
    assert "prj_other" not in cursor
    assert decode_cursor("project", cursor, P, None) == {"project_id": {"S": P}, "session_id": {"S": sid}}


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24", "eyJtIjoicCIsInMiOiJ4In0"])
def test_garbage_cursors_are_bad_requests(cursor: str) -> None:
    with pytest.raises(BadRequest):
        decode_cursor("project", cursor, P, None)


def test_a_cursor_from_another_listing_is_rejected() -> None:
    sid = ids.new_session_id()
    cursor = encode_cursor("project", {"session_id": {"S": sid}})
    with pytest.raises(BadRequest):
        decode_cursor("user", cursor, P, f"{P}#u")
