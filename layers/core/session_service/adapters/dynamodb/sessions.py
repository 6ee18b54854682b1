"""The session store: sessions (spread over session shards, session_service.domain.keys), their tag claims,
config history and usage records.

Every write that can race is conditional, and the conditions that lose become domain outcomes here
(TagTaken, WriteConflict, False). Listing merges the shards' Queries lazily, newest first; a cursor is the
last key returned (a session id, or an updated_key), so the next page is every shard's Query after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from session_service.adapters.dynamodb.session_listing import (
    all_of,
    decode_cursor,
    encode_cursor,
    listing_for,
    merge_newest_first,
)
from session_service.adapters.dynamodb.tables import (
    Tables,
    condition_failed,
    dynamodb_errors,
    live_session,
    lost_race,
)
from session_service.domain import keys
from session_service.domain.entities import ListQuery, Page, Session, Tombstone, UsageRecord
from session_service.domain.errors import TagTaken, WriteConflict


def _config_entry(version: int) -> str:
    return f"config#{version:010d}"


# --- cursors -----------------------------------------------------------------------------------------
# A cursor carries only the last sort key returned (and the listing it belongs to). The partition keys are
# always rebuilt from the caller's project, so a forged or replayed cursor can never page into another one.


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
            metadata=None,  # sealed: the service opens it (session_service.services.content_keys)
            sealed_metadata=None if item.sealed_metadata is None else bytes(item.sealed_metadata),
            sealed_data_key=None if item.sealed_data_key is None else bytes(item.sealed_data_key),
            sealed_agent_state=None if item.sealed_agent_state is None else bytes(item.sealed_agent_state),
            agent_state_version=int(item.agent_state_version or 0),
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
            sealed_agent_state=session.sealed_agent_state,
            agent_state_version=session.agent_state_version or None,
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
        # The agent-state version it read too: the body published after it is then exactly the stored one
        # (an agent-state write in between makes it re-read: an optimistic round, not a 409).
        same_agent_state = (
            S.agent_state_version.does_not_exist()
            if not session.agent_state_version
            else S.agent_state_version == session.agent_state_version
        )
        condition = (S.version == previous_version) & same_agent_state & live_session(S)
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

    def put_agent_state(
        self, project_id: str, session_id: str, sealed: bytes, *, expected_version: int, at: str
    ) -> Session | None:
        """One conditional UpdateItem, no read: the new state if the session is live and its agent state is
        still at `expected_version`; the stored session after the write, or None when the condition failed
        (the caller reads to tell a gone session from a stale version)."""
        S = self._t.SessionItem
        version_holds = (
            S.agent_state_version.does_not_exist() | (S.agent_state_version == 0)
            if expected_version == 0
            else S.agent_state_version == expected_version
        )
        item = self._key(project_id, session_id)
        with dynamodb_errors("put_agent_state"):
            try:
                item.update(
                    actions=[
                        S.sealed_agent_state.set(sealed),
                        S.agent_state_version.set(expected_version + 1),
                        # A change like any other: `changed_since` listings catch up through it.
                        S.updated_at.set(at),
                        S.updated_key.set(keys.updated_key(at, session_id)),
                    ],
                    condition=live_session(S) & version_holds,
                )
            except PynamoDBException as error:
                if condition_failed(error):
                    return None
                raise
        return self._to_session(item)

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
                    condition=live_session(S)
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
                S.sealed_agent_state.remove(),
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
                    condition=live_session(S) & slot,
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
        listing = listing_for(query)
        mode, sort_attr = listing.mode, listing.sort_attribute
        after = decode_cursor(mode, query.cursor, query.changed_since) if query.cursor else None
        low = listing.low(query)
        key = getattr(S, sort_attr)
        if low is None:  # sort keys unique per partition: strictly below the last one returned
            key_range = None if after is None else key < after
        else:  # from `low` down to the last one returned (BETWEEN includes it: dropped below)
            key_range = key >= low if after is None else key.between(low, after)
        live = None if query.include_deleted and not listing.live_only else S.deleted_at.does_not_exist()
        since = S.updated_at >= query.changed_since if listing.filters_since and query.changed_since else None
        source = S if listing.index is None else getattr(S, listing.index)
        options: dict[str, Any] = {
            "range_key_condition": key_range,
            "filter_condition": all_of(live, since),
            "scan_index_forward": False,
            "page_size": max(
                2, query.limit // keys.SESSION_SHARDS + 2
            ),  # a shard's share of a page, and a bit
            **({"consistent_read": True} if listing.index is None else {}),
        }

        def shard(partition: str) -> Callable[[], Iterable[Any]]:
            def items() -> Iterator[Any]:
                found = source.query(partition, **options)
                return (item for item in found if getattr(item, sort_attr) != after)

            return items

        def sort_key(item: Any) -> str:
            return str(getattr(item, sort_attr))

        shards = [shard(partition) for partition in listing.partitions(project_id, query)]
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
