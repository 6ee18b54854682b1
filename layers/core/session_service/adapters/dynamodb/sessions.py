"""The session store: sessions (spread over session shards, session_service.keys), their tag claims, config
history and usage records.

Every write that can race is conditional, and the conditions that lose become domain outcomes here
(TagTaken, WriteConflict, False). Listing merges the shards' Queries lazily, newest first; a cursor is the
last key returned (a session id, or an updated_key), so the next page is every shard's Query after it.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import chain, islice
from typing import Any

from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from session_service import ids, keys
from session_service.adapters.dynamodb.tables import (
    Tables,
    condition_failed,
    dynamodb_errors,
    lost_race,
)
from session_service.errors import BadRequest, TagTaken, WriteConflict
from session_service.models import ListQuery, Page, Session, Tombstone, UsageRecord

_UPDATED_KEY = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z#ses_[0-9a-z]{26}$")
_MODES = {"project": "p", "user": "u", "changed": "c", "active": "a"}


def _config_entry(version: int) -> str:
    return f"config#{version:010d}"


def _all_of(*conditions: Any) -> Any:
    present = [condition for condition in conditions if condition is not None]
    if not present:
        return None
    combined = present[0]
    for condition in present[1:]:
        combined = combined & condition
    return combined


# --- cursors -----------------------------------------------------------------------------------------
# A cursor carries only the last sort key returned (and the listing it belongs to). The partition keys are
# always rebuilt from the caller's project, so a forged or replayed cursor can never page into another one.


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


class DynamoSessionStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def _key(self, project_id: str, session_id: str) -> Any:
        return self._t.SessionItem(pk=keys.session_partition(project_id, session_id), session_id=session_id)

    def _to_session(self, item: Any) -> Session:
        return Session(
            project_id=item.project_id,
            session_id=item.session_id,
            user_id=item.user_id,
            tag=item.tag,
            config=item.config or {},
            metadata=None,  # sealed: the service opens it (session_service.content_keys)
            sealed_metadata=None if item.sealed_metadata is None else bytes(item.sealed_metadata),
            sealed_data_key=None if item.sealed_data_key is None else bytes(item.sealed_data_key),
            version=int(item.version),
            created_at=item.created_at,
            updated_at=item.updated_at,
            deleted_at=item.deleted_at,
            teardown_state=item.teardown_state,
            teardown_completed_at=item.teardown_completed_at,
            sandboxes_killed=int(item.sandboxes_killed or 0),
            sandbox_id=item.sandbox_id,
            last_active_at=item.last_active_at,
            messages_purged=int(item.messages_purged or 0),
            key_destroyed_at=item.key_destroyed_at,
        )

    def _audit_config(self, session: Session) -> Any:
        return self._t.AuditItem(
            session_key=keys.audit_partition(session.project_id, session.session_id),
            entry=_config_entry(session.version),
            kind="config",
            project_id=session.project_id,
            session_id=session.session_id,
            at=session.updated_at,
            version=session.version,
            config=session.config,
        )

    def get(self, project_id: str, session_id: str) -> Session | None:
        with dynamodb_errors("get_session"):
            try:
                item = self._t.SessionItem.get(
                    keys.session_partition(project_id, session_id), session_id, consistent_read=True
                )
            except DoesNotExist:
                return None
        return self._to_session(item)

    def tag_owner(self, project_id: str, tag: str) -> str | None:
        with dynamodb_errors("get_tag_claim"):
            try:
                claim = self._t.ProjectItem.get(
                    keys.tag_partition(project_id, tag), "tag", consistent_read=True
                )
            except DoesNotExist:
                return None
        return claim.session_id

    def create(
        self, session: Session, *, replaces_tag_owner: str | None = None, wrapped_key: bytes | None = None
    ) -> None:
        S, P, K = self._t.SessionItem, self._t.ProjectItem, self._t.KeyItem
        item = S(
            pk=keys.session_partition(session.project_id, session.session_id),
            session_id=session.session_id,
            project_id=session.project_id,
            user_id=session.user_id,
            user_key=keys.user_partition(session.project_id, session.user_id, session.session_id),
            tag=session.tag,
            config=session.config,
            sealed_metadata=session.sealed_metadata,
            sealed_data_key=session.sealed_data_key,
            version=session.version,
            created_at=session.created_at,
            updated_at=session.updated_at,
            updated_key=keys.updated_key(session.updated_at, session.session_id),
        )
        with dynamodb_errors("create_session"):
            try:
                # The token makes a retried transaction (reply lost, write applied) succeed instead of
                # failing its conditions; one token per attempt of the service's create loop.
                with TransactWrite(
                    connection=self._t.connection, client_request_token=uuid.uuid4().hex
                ) as tx:
                    tx.save(item, condition=S.session_id.does_not_exist())
                    tx.save(self._audit_config(session))
                    if wrapped_key is not None:
                        # The session's key, in the keys table: it exists exactly when the session does.
                        key = K(
                            pk=keys.session_key_partition(session.project_id, session.session_id),
                            wrapped=wrapped_key,
                            created_at=session.created_at,
                        )
                        tx.save(key, condition=K.pk.does_not_exist())
                    if session.tag is not None:
                        claim = P(
                            pk=keys.tag_partition(session.project_id, session.tag),
                            sk="tag",
                            session_id=session.session_id,
                        )
                        expected = (
                            P.sk.does_not_exist()
                            if replaces_tag_owner is None
                            else P.session_id == replaces_tag_owner
                        )
                        tx.save(claim, condition=expected)
            except TransactWriteError as error:
                if lost_race(error):
                    raise TagTaken() from error
                raise

    def update(self, session: Session, *, previous_version: int, config_changed: bool) -> None:
        S = self._t.SessionItem
        actions: list[Any] = [
            S.version.set(session.version),
            S.updated_at.set(session.updated_at),
            S.updated_key.set(keys.updated_key(session.updated_at, session.session_id)),
            S.config.set(session.config),
        ]
        if session.sealed_metadata is not None:
            actions.append(S.sealed_metadata.set(session.sealed_metadata))
        condition = (S.version == previous_version) & S.deleted_at.does_not_exist()
        with dynamodb_errors("update_session"):
            try:
                # Always a transaction with a request token: a retry of an applied write must not lose its
                # own version check (a false 409, or the change applied twice).
                with TransactWrite(
                    connection=self._t.connection, client_request_token=uuid.uuid4().hex
                ) as tx:
                    tx.update(
                        self._key(session.project_id, session.session_id),
                        actions=actions,
                        condition=condition,
                    )
                    if config_changed:
                        tx.save(self._audit_config(session))
            except TransactWriteError as error:
                if lost_race(error):
                    raise WriteConflict() from error
                raise

    def tombstone(
        self, project_id: str, session_id: str, deleted_at: str, expires_at: int, *, request_token: str
    ) -> bool:
        """One conditional UpdateItem. The request token makes it idempotent: if the SDK retries a write that
        DynamoDB applied but whose reply was lost, the retry matches its own token instead of failing the
        condition (which would turn a successful DELETE into a 404)."""
        S = self._t.SessionItem
        with dynamodb_errors("tombstone_session"):
            try:
                self._key(project_id, session_id).update(
                    actions=[
                        S.deleted_at.set(deleted_at),
                        S.updated_at.set(deleted_at),
                        S.updated_key.set(keys.updated_key(deleted_at, session_id)),
                        S.delete_token.set(request_token),
                        S.teardown_state.set("pending"),
                        S.teardown_pending.set(keys.pending_partition(session_id)),
                        S.expires_at.set(expires_at),
                    ],
                    condition=S.session_id.exists()
                    & (S.deleted_at.does_not_exist() | (S.delete_token == request_token)),
                )
            except PynamoDBException as error:
                if condition_failed(error):
                    return False
                raise
        return True

    def touch_activity(self, project_id: str, session_id: str, at: str, not_since: str) -> None:
        """Record activity at `at` unless it was recorded at or after `not_since` (at most once a minute),
        and never on a deleted session. A lost race is fine: someone else recorded it."""
        S = self._t.SessionItem
        with dynamodb_errors("touch_activity"):
            try:
                self._key(project_id, session_id).update(
                    actions=[S.last_active_at.set(at), S.active_key.set(keys.updated_key(at, session_id))],
                    condition=S.session_id.exists()
                    & S.deleted_at.does_not_exist()
                    & (S.last_active_at.does_not_exist() | (S.last_active_at < not_since)),
                )
            except PynamoDBException as error:
                if not condition_failed(error):
                    raise

    def record_teardown(
        self, project_id: str, session_id: str, *, killed: int, done_at: str | None, messages_purged: int = 0
    ) -> None:
        S = self._t.SessionItem
        actions: list[Any] = [S.sandboxes_killed.add(killed)]
        if messages_purged:
            actions.append(S.messages_purged.add(messages_purged))
        if done_at is not None:
            actions += [
                S.teardown_state.set("done"),
                S.teardown_completed_at.set(done_at),
                S.teardown_pending.remove(),
                S.config.remove(),
                S.sealed_metadata.remove(),
                S.sealed_data_key.remove(),
            ]
        with dynamodb_errors("record_teardown"):
            self._key(project_id, session_id).update(actions=actions, condition=S.deleted_at.exists())

    def record_key_destroyed(self, project_id: str, session_id: str, at: str) -> None:
        """When teardown first destroyed the session's key (kept on later runs)."""
        S = self._t.SessionItem
        with dynamodb_errors("record_key_destroyed"):
            try:
                self._key(project_id, session_id).update(
                    actions=[S.key_destroyed_at.set(at)],
                    condition=S.deleted_at.exists() & S.key_destroyed_at.does_not_exist(),
                )
            except PynamoDBException as error:
                if not condition_failed(error):
                    raise

    def attach_sandbox(
        self, project_id: str, session_id: str, sandbox_id: str, *, replaces: str | None
    ) -> bool:
        S = self._t.SessionItem
        slot = S.sandbox_id.does_not_exist() if replaces is None else S.sandbox_id == replaces
        with dynamodb_errors("attach_sandbox"):
            try:
                self._key(project_id, session_id).update(
                    actions=[S.sandbox_id.set(sandbox_id)],
                    condition=S.session_id.exists() & S.deleted_at.does_not_exist() & slot,
                )
            except PynamoDBException as error:
                if condition_failed(error):
                    return False
                raise
        return True

    def record_usage(self, usage: UsageRecord) -> None:
        item = self._t.AuditItem(
            session_key=keys.audit_partition(usage.project_id, usage.session_id),
            entry=f"usage#{usage.at}#{usage.sandbox_id}",
            kind="usage",
            project_id=usage.project_id,
            session_id=usage.session_id,
            at=usage.at,
            sandbox_id=usage.sandbox_id,
            duration_ms=usage.duration_ms,
            exit_code=usage.exit_code,
            timed_out="true" if usage.timed_out else "false",
            tool=usage.tool,
        )
        with dynamodb_errors("record_usage"):
            item.save()

    def audit_entries(self, project_id: str, session_id: str) -> list[dict[str, Any]]:
        """Config history and usage records of a session, oldest first (operators, tests)."""
        with dynamodb_errors("audit_entries"):
            return [
                {key: value for key, value in item.attribute_values.items() if value is not None}
                for item in self._t.AuditItem.query(keys.audit_partition(project_id, session_id))
            ]

    def pending_teardowns(self, deleted_before: str, limit: int) -> list[Tombstone]:
        """The oldest pending teardowns across the index's shards, queried in parallel."""
        S = self._t.SessionItem

        def shard(partition: str) -> list[Any]:
            return list(
                S.pending_teardown.query(
                    partition,
                    range_key_condition=S.deleted_at < deleted_before,
                    limit=limit,
                    page_size=min(limit, 100),
                )
            )

        partitions = keys.pending_partitions()
        with dynamodb_errors("pending_teardowns"):
            found = shard(partitions[0])  # creates the SDK client before the threads share it
            with ThreadPoolExecutor(max_workers=8) as pool:
                found += [item for items in pool.map(shard, partitions[1:]) for item in items]
        found.sort(key=lambda item: item.deleted_at)
        return [Tombstone(item.project_id, item.session_id, item.deleted_at) for item in found[:limit]]

    def list(self, project_id: str, query: ListQuery) -> Page:
        S = self._t.SessionItem
        live = None if query.include_deleted else S.deleted_at.does_not_exist()
        page_size = max(2, query.limit // keys.SESSION_SHARDS + 2)  # a shard's share of a page, and a bit
        shards: list[Callable[[], Iterable[Any]]]
        sort_key: Callable[[Any], str]
        if query.user_id is not None:
            mode, sort_key = "user", _session_id_of
            after = decode_cursor(mode, query.cursor) if query.cursor else None
            since = None if query.changed_since is None else S.updated_at >= query.changed_since
            condition = _all_of(live, since)

            def by_user(partition: str) -> Callable[[], Iterable[Any]]:
                return lambda: S.by_user.query(
                    partition,
                    range_key_condition=None if after is None else S.session_id < after,
                    filter_condition=condition,
                    scan_index_forward=False,
                    page_size=page_size,
                )

            shards = [by_user(partition) for partition in keys.user_partitions(project_id, query.user_id)]
        elif query.active_since is not None:
            mode, sort_key = "active", _active_key_of
            after = decode_cursor(mode, query.cursor) if query.cursor else None
            low = query.active_since
            active_range = S.active_key >= low if after is None else S.active_key.between(low, after)

            def by_activity(partition: str) -> Callable[[], Iterable[Any]]:
                def items() -> Iterator[Any]:
                    found = S.by_activity.query(
                        partition,
                        range_key_condition=active_range,
                        filter_condition=S.deleted_at.does_not_exist(),
                        scan_index_forward=False,
                        page_size=page_size,
                    )
                    return (item for item in found if item.active_key != after)

                return items

            shards = [by_activity(partition) for partition in keys.project_partitions(project_id)]
        elif query.changed_since is not None:
            mode, sort_key = "changed", _updated_key_of
            after = decode_cursor(mode, query.cursor, query.changed_since) if query.cursor else None
            low = query.changed_since
            key_range = S.updated_key >= low if after is None else S.updated_key.between(low, after)

            def by_updated(partition: str) -> Callable[[], Iterable[Any]]:
                def items() -> Iterator[Any]:
                    found = S.by_updated.query(
                        partition,
                        range_key_condition=key_range,
                        filter_condition=live,
                        scan_index_forward=False,
                        page_size=page_size,
                    )
                    return (item for item in found if item.updated_key != after)  # BETWEEN includes it

                return items

            shards = [by_updated(partition) for partition in keys.project_partitions(project_id)]
        else:
            mode, sort_key = "project", _session_id_of
            after = decode_cursor(mode, query.cursor) if query.cursor else None

            def by_project(partition: str) -> Callable[[], Iterable[Any]]:
                return lambda: S.query(
                    partition,
                    range_key_condition=None if after is None else S.session_id < after,
                    filter_condition=live,
                    consistent_read=True,
                    scan_index_forward=False,
                    page_size=page_size,
                )

            shards = [by_project(partition) for partition in keys.project_partitions(project_id)]
        with dynamodb_errors("list_sessions"):
            # One more than asked: whether another page exists without an extra round trip.
            found = merge_newest_first(shards, sort_key, query.limit + 1)
        items = found[: query.limit]
        more = len(found) > query.limit
        cursors = tuple(encode_cursor(mode, sort_key(item), query.changed_since) for item in items)
        return Page(
            items=[self._to_session(item) for item in items],
            next_cursor=cursors[-1] if more and cursors else None,
            cursors=cursors,
        )


def _session_id_of(item: Any) -> str:
    return str(item.session_id)


def _updated_key_of(item: Any) -> str:
    return str(item.updated_key)


def _active_key_of(item: Any) -> str:
    return str(item.active_key)
