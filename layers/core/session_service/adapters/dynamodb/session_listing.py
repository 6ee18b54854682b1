"""Listing a project's sessions: which index each listing reads, its cursors, and the merge of its shards.

A listing reads every session shard of the project (or of the user) newest first and merges them
(`merge_newest_first`); a cursor carries only the last sort key returned and the listing it belongs to.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from session_service.domain import ids, keys
from session_service.domain.entities import ListQuery
from session_service.domain.errors import BadRequest

_UPDATED_KEY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z#ses_[0-9a-z]{26}$")

_MODES = {"project": "p", "user": "u", "changed": "c", "active": "a"}


def all_of(*conditions: Any) -> Any:
    present = [condition for condition in conditions if condition is not None]
    if not present:
        return None
    combined = present[0]
    for condition in present[1:]:
        combined = combined & condition
    return combined


def encode_cursor(mode: str, last: str, since: str | None = None) -> str:
    payload = {"m": _MODES[mode], "k": last}
    if mode == "changed":
        payload["q"] = since or ""
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(mode: str, cursor: str, since: str | None = None) -> str:
    """The last key of the previous page; BadRequest for anything this listing did not issue."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as error:
        raise BadRequest("invalid cursor") from error
    if not isinstance(payload, dict) or payload.get("m") != _MODES[mode]:
        raise BadRequest("invalid cursor (it belongs to a different listing)")
    last = payload.get("k")
    valid = ids.is_session_id if mode in ("project", "user") else _UPDATED_KEY.match
    if not isinstance(last, str) or not valid(last):
        raise BadRequest("invalid cursor")
    if mode == "changed" and payload.get("q") != (since or ""):
        raise BadRequest("invalid cursor (it belongs to a listing with another changed_since)")
    return last


def merge_newest_first(
    shards: list[Callable[[], Iterable[Any]]], sort_key: Callable[[Any], str], limit: int
) -> list[Any]:
    """The `limit` greatest items of several descending shard iterators, reading each only as far as needed.

    The first page of every shard is fetched in parallel (the iterators are lazy: PynamoDB fetches a page
    when the previous one is consumed), then heapq.merge pulls from whichever shard is ahead.
    """

    def first(shard: Callable[[], Iterable[Any]]) -> Iterator[Any]:
        iterator = iter(shard())
        head = next(iterator, None)
        return iterator if head is None else chain([head], iterator)

    # The first shard in this thread: it creates the SDK client, which is not safe to create concurrently.
    started = [first(shards[0])]
    with ThreadPoolExecutor(max_workers=min(len(shards), 16)) as pool:
        started += list(pool.map(first, shards[1:]))
    return list(islice(heapq.merge(*started, key=sort_key, reverse=True), limit))


@dataclass(frozen=True)
class _Listing:
    """One way of listing a project's sessions: which index, sorted by what, over which partitions."""

    mode: str  # the cursor's listing
    index: str | None  # None: the table itself (read consistently)
    sort_attribute: str  # the range key, newest first
    partitions: Callable[[str, ListQuery], list[str]]
    low: Callable[[ListQuery], str | None] = lambda query: None  # the sort key's inclusive lower bound
    filters_since: bool = False  # changed_since filtered on updated_at (no index sorts by it here)
    live_only: bool = False  # tombstones never listed, include_deleted or not


_LISTINGS = {
    "user": _Listing(
        "user", "by_user", "session_id", lambda p, q: keys.user_partitions(p, q.user_id or ""),
        filters_since=True,
    ),
    "active": _Listing(
        "active", "by_activity", "active_key", lambda p, q: keys.project_partitions(p),
        low=lambda query: query.active_since, live_only=True,
    ),
    "changed": _Listing(
        "changed", "by_updated", "updated_key", lambda p, q: keys.project_partitions(p),
        low=lambda query: query.changed_since,
    ),
    "project": _Listing("project", None, "session_id", lambda p, q: keys.project_partitions(p)),
}  # fmt: skip


def listing_for(query: ListQuery) -> _Listing:
    if query.user_id is not None:
        return _LISTINGS["user"]
    if query.active_since is not None:
        return _LISTINGS["active"]
    return _LISTINGS["changed" if query.changed_since is not None else "project"]
