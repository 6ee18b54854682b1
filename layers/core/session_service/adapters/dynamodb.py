"""DynamoDB through PynamoDB: the session store, the project store and the key store.

Table names come from the environment, so the PynamoDB model classes are built per configuration
(`Tables(settings)`), not at import time. Vendor errors become domain outcomes here: a lost condition is
TagTaken/WriteConflict, anything else that stops DynamoDB from answering is DependencyUnavailable.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from session_service import ids
from session_service.errors import BadRequest, DependencyUnavailable, TagTaken, WriteConflict
from session_service.models import ApiKeyRecord, ListQuery, Page, Project, Session, Tombstone, UsageRecord
from session_service.observability import logger
from session_service.settings import Settings

CONDITION_FAILED = "ConditionalCheckFailedException"
_LOST_RACE = {"ConditionalCheckFailed", "TransactionConflict"}

T = TypeVar("T")


@contextmanager
def _dynamodb_errors(operation: str) -> Iterator[None]:
    """Anything PynamoDB raises that we did not turn into a domain outcome means DynamoDB is unavailable."""
    try:
        yield
    except PynamoDBException as error:
        logger.exception("DynamoDB call failed", extra={"operation": operation})
        raise DependencyUnavailable("the session store is unavailable; retry the request") from error


def _condition_failed(error: PynamoDBException) -> bool:
    return error.cause_response_code == CONDITION_FAILED


class Tables:
    """PynamoDB model classes bound to one configuration's table names, endpoint and timeouts."""

    def __init__(self, settings: Settings) -> None:
        meta: dict[str, Any] = {
            "region": settings.region,
            "host": settings.aws_endpoint_url,
            "connect_timeout_seconds": settings.dynamodb_connect_timeout_seconds,
            "read_timeout_seconds": settings.dynamodb_read_timeout_seconds,
            "max_retry_attempts": settings.dynamodb_max_retries,
        }
        self.connection = Connection(
            region=settings.region,
            host=settings.aws_endpoint_url,
            connect_timeout_seconds=settings.dynamodb_connect_timeout_seconds,
            read_timeout_seconds=settings.dynamodb_read_timeout_seconds,
            max_retry_attempts=settings.dynamodb_max_retries,
        )

        def index_meta(name: str, projection: Any = None) -> type:
            return type("Meta", (), {"index_name": name, "projection": projection or AllProjection()})

        class ByUser(GlobalSecondaryIndex):
            Meta = index_meta("by_user")
            user_key = UnicodeAttribute(hash_key=True)
            session_id = UnicodeAttribute(range_key=True)

        class ByUpdated(GlobalSecondaryIndex):
            Meta = index_meta("by_updated")
            project_id = UnicodeAttribute(hash_key=True)
            updated_at = UnicodeAttribute(range_key=True)

        class PendingTeardown(GlobalSecondaryIndex):
            """Sparse: only tombstones whose teardown is not done carry `teardown_pending`."""

            Meta = index_meta("pending_teardown", KeysOnlyProjection())
            teardown_pending = UnicodeAttribute(hash_key=True)
            deleted_at = UnicodeAttribute(range_key=True)

        class SessionItem(Model):
            Meta = type("Meta", (), {"table_name": settings.sessions_table, **meta})  # type: ignore[assignment]
            project_id = UnicodeAttribute(hash_key=True)
            session_id = UnicodeAttribute(range_key=True)
            user_id = UnicodeAttribute()
            user_key = UnicodeAttribute()
            tag = UnicodeAttribute(null=True)
            config = JSONAttribute(null=True)  # purged by teardown
            session_metadata = JSONAttribute(attr_name="metadata", null=True)  # purged by teardown
            version = NumberAttribute()
            created_at = UnicodeAttribute()
            updated_at = UnicodeAttribute()
            deleted_at = UnicodeAttribute(null=True)
            delete_token = UnicodeAttribute(null=True)
            teardown_state = UnicodeAttribute(null=True)
            teardown_pending = UnicodeAttribute(null=True)
            teardown_completed_at = UnicodeAttribute(null=True)
            sandboxes_killed = NumberAttribute(null=True)
            sandbox_id = UnicodeAttribute(null=True)
            expires_at = NumberAttribute(null=True)  # DynamoDB TTL: the tombstone's end
            by_user = ByUser()
            by_updated = ByUpdated()
            pending_teardown = PendingTeardown()

        class ProjectItem(Model):
            """Project records (sk="project") and tag claims (sk="tag#<tag>") share the projects table."""

            Meta = type("Meta", (), {"table_name": settings.projects_table, **meta})  # type: ignore[assignment]
            project_id = UnicodeAttribute(hash_key=True)
            sk = UnicodeAttribute(range_key=True)
            name = UnicodeAttribute(null=True)
            created_at = UnicodeAttribute(null=True)
            session_id = UnicodeAttribute(null=True)
            epoch_ms = NumberAttribute(null=True)  # the cache epoch copies (project_id "_cache_epoch#<n>")

        class AuditItem(Model):
            Meta = type("Meta", (), {"table_name": settings.audit_table, **meta})  # type: ignore[assignment]
            session_key = UnicodeAttribute(hash_key=True)
            entry = UnicodeAttribute(range_key=True)
            kind = UnicodeAttribute()
            project_id = UnicodeAttribute()
            session_id = UnicodeAttribute()
            at = UnicodeAttribute()
            version = NumberAttribute(null=True)
            config = JSONAttribute(null=True)
            sandbox_id = UnicodeAttribute(null=True)
            duration_ms = NumberAttribute(null=True)
            exit_code = NumberAttribute(null=True)
            timed_out = UnicodeAttribute(null=True)

        class ByProject(GlobalSecondaryIndex):
            Meta = index_meta("by_project")
            project_id = UnicodeAttribute(hash_key=True)
            key_id = UnicodeAttribute(range_key=True)

        class ApiKeyItem(Model):
            Meta = type("Meta", (), {"table_name": settings.api_keys_table, **meta})  # type: ignore[assignment]
            key_hash = UnicodeAttribute(hash_key=True)
            key_id = UnicodeAttribute()
            project_id = UnicodeAttribute()
            created_at = UnicodeAttribute()
            revoked_at = UnicodeAttribute(null=True)
            by_project = ByProject()

        self.SessionItem = SessionItem
        self.ProjectItem = ProjectItem
        self.AuditItem = AuditItem
        self.ApiKeyItem = ApiKeyItem


def _tag_sk(tag: str) -> str:
    return f"tag#{tag}"


def _config_entry(version: int) -> str:
    return f"config#{version:010d}"


# --- cursors -----------------------------------------------------------------------------------------
# A cursor carries only sort-key values. The partition key is always rebuilt from the caller's project,
# so a forged or replayed cursor can never page into another project.

_MODES = {"project": "p", "user": "u", "changed": "c"}
PENDING = "pending"


def _all_of(*conditions: Any) -> Any:
    present = [condition for condition in conditions if condition is not None]
    if not present:
        return None
    combined = present[0]
    for condition in present[1:]:
        combined = combined & condition
    return combined


def encode_cursor(mode: str, last_key: dict[str, Any], since: str | None = None) -> str:
    payload: dict[str, str] = {"m": _MODES[mode], "s": last_key["session_id"]["S"]}
    if mode == "changed":
        payload["t"] = last_key["updated_at"]["S"]
        payload["q"] = since or ""  # a start key outside a different changed_since is invalid in DynamoDB
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    mode: str, cursor: str, project_id: str, user_key: str | None, since: str | None = None
) -> dict[str, Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as error:
        raise BadRequest("invalid cursor") from error
    if not isinstance(payload, dict) or payload.get("m") != _MODES[mode]:
        raise BadRequest("invalid cursor (it belongs to a different listing)")
    session_id = payload.get("s")
    if not isinstance(session_id, str) or not ids.is_session_id(session_id):
        raise BadRequest("invalid cursor")
    key: dict[str, Any] = {"project_id": {"S": project_id}, "session_id": {"S": session_id}}
    if mode == "user":
        key["user_key"] = {"S": user_key}
    elif mode == "changed":
        updated_at = payload.get("t")
        if not isinstance(updated_at, str) or len(updated_at) > 40:
            raise BadRequest("invalid cursor")
        if payload.get("q") != (since or ""):
            raise BadRequest("invalid cursor (it belongs to a listing with another changed_since)")
        key["updated_at"] = {"S": updated_at}
    return key


class DynamoSessionStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def _to_session(self, item: Any) -> Session:
        return Session(
            project_id=item.project_id,
            session_id=item.session_id,
            user_id=item.user_id,
            tag=item.tag,
            config=item.config or {},
            metadata=item.session_metadata or {},
            version=int(item.version),
            created_at=item.created_at,
            updated_at=item.updated_at,
            deleted_at=item.deleted_at,
            teardown_state=item.teardown_state,
            teardown_completed_at=item.teardown_completed_at,
            sandboxes_killed=int(item.sandboxes_killed or 0),
            sandbox_id=item.sandbox_id,
        )

    def _audit_config(self, session: Session) -> Any:
        return self._t.AuditItem(
            session_key=f"{session.project_id}#{session.session_id}",
            entry=_config_entry(session.version),
            kind="config",
            project_id=session.project_id,
            session_id=session.session_id,
            at=session.updated_at,
            version=session.version,
            config=session.config,
        )

    def get(self, project_id: str, session_id: str) -> Session | None:
        with _dynamodb_errors("get_session"):
            try:
                item = self._t.SessionItem.get(project_id, session_id, consistent_read=True)
            except DoesNotExist:
                return None
        return self._to_session(item)

    def tag_owner(self, project_id: str, tag: str) -> str | None:
        with _dynamodb_errors("get_tag_claim"):
            try:
                claim = self._t.ProjectItem.get(project_id, _tag_sk(tag), consistent_read=True)
            except DoesNotExist:
                return None
        return claim.session_id

    def create(self, session: Session, *, replaces_tag_owner: str | None = None) -> None:
        S, P = self._t.SessionItem, self._t.ProjectItem
        item = S(
            project_id=session.project_id,
            session_id=session.session_id,
            user_id=session.user_id,
            user_key=f"{session.project_id}#{session.user_id}",
            tag=session.tag,
            config=session.config,
            session_metadata=session.metadata,
            version=session.version,
            created_at=session.created_at,
            updated_at=session.updated_at,
        )
        with _dynamodb_errors("create_session"):
            try:
                # The token makes a retried transaction (reply lost, write applied) succeed instead of
                # failing its conditions; one token per attempt of the service's create loop.
                with TransactWrite(
                    connection=self._t.connection, client_request_token=uuid.uuid4().hex
                ) as tx:
                    tx.save(item, condition=S.session_id.does_not_exist())
                    tx.save(self._audit_config(session))
                    if session.tag is not None:
                        claim = P(
                            project_id=session.project_id,
                            sk=_tag_sk(session.tag),
                            session_id=session.session_id,
                        )
                        expected = (
                            P.sk.does_not_exist()
                            if replaces_tag_owner is None
                            else P.session_id == replaces_tag_owner
                        )
                        tx.save(claim, condition=expected)
            except TransactWriteError as error:
                reasons = [r.code for r in (error.cancellation_reasons or []) if r is not None]
                if any(code in _LOST_RACE for code in reasons):
                    raise TagTaken() from error
                raise

    def update(self, session: Session, *, previous_version: int, config_changed: bool) -> None:
        S = self._t.SessionItem
        actions: list[Any] = [
            S.version.set(session.version),
            S.updated_at.set(session.updated_at),
            S.config.set(session.config),
            S.session_metadata.set(session.metadata),
        ]
        condition = (S.version == previous_version) & S.deleted_at.does_not_exist()
        key = S(project_id=session.project_id, session_id=session.session_id)
        with _dynamodb_errors("update_session"):
            try:
                # Always a transaction with a request token: a retry of an applied write must not lose its
                # own version check (a false 409, or the change applied twice).
                with TransactWrite(
                    connection=self._t.connection, client_request_token=uuid.uuid4().hex
                ) as tx:
                    tx.update(key, actions=actions, condition=condition)
                    if config_changed:
                        tx.save(self._audit_config(session))
            except TransactWriteError as error:
                reasons = [r.code for r in (error.cancellation_reasons or []) if r is not None]
                if any(code in _LOST_RACE for code in reasons):
                    raise WriteConflict() from error
                raise
            except PynamoDBException as error:
                if _condition_failed(error):
                    raise WriteConflict() from error
                raise

    def tombstone(
        self, project_id: str, session_id: str, deleted_at: str, expires_at: int, *, request_token: str
    ) -> bool:
        """One conditional UpdateItem. The request token makes it idempotent: if the SDK retries a write that
        DynamoDB applied but whose reply was lost, the retry matches its own token instead of failing the
        condition (which would turn a successful DELETE into a 404)."""
        S = self._t.SessionItem
        with _dynamodb_errors("tombstone_session"):
            try:
                S(project_id=project_id, session_id=session_id).update(
                    actions=[
                        S.deleted_at.set(deleted_at),
                        S.updated_at.set(deleted_at),
                        S.delete_token.set(request_token),
                        S.teardown_state.set("pending"),
                        S.teardown_pending.set(PENDING),
                        S.expires_at.set(expires_at),
                    ],
                    condition=S.session_id.exists()
                    & (S.deleted_at.does_not_exist() | (S.delete_token == request_token)),
                )
            except PynamoDBException as error:
                if _condition_failed(error):
                    return False
                raise
        return True

    def record_teardown(self, project_id: str, session_id: str, *, killed: int, done_at: str | None) -> None:
        S = self._t.SessionItem
        actions: list[Any] = [S.sandboxes_killed.add(killed)]
        if done_at is not None:
            actions += [
                S.teardown_state.set("done"),
                S.teardown_completed_at.set(done_at),
                S.teardown_pending.remove(),
                S.config.remove(),
                S.session_metadata.remove(),
            ]
        with _dynamodb_errors("record_teardown"):
            S(project_id=project_id, session_id=session_id).update(
                actions=actions, condition=S.deleted_at.exists()
            )

    def attach_sandbox(
        self, project_id: str, session_id: str, sandbox_id: str, *, replaces: str | None
    ) -> bool:
        S = self._t.SessionItem
        slot = S.sandbox_id.does_not_exist() if replaces is None else S.sandbox_id == replaces
        with _dynamodb_errors("attach_sandbox"):
            try:
                S(project_id=project_id, session_id=session_id).update(
                    actions=[S.sandbox_id.set(sandbox_id)],
                    condition=S.session_id.exists() & S.deleted_at.does_not_exist() & slot,
                )
            except PynamoDBException as error:
                if _condition_failed(error):
                    return False
                raise
        return True

    def record_usage(self, usage: UsageRecord) -> None:
        item = self._t.AuditItem(
            session_key=f"{usage.project_id}#{usage.session_id}",
            entry=f"usage#{usage.at}#{usage.sandbox_id}",
            kind="usage",
            project_id=usage.project_id,
            session_id=usage.session_id,
            at=usage.at,
            sandbox_id=usage.sandbox_id,
            duration_ms=usage.duration_ms,
            exit_code=usage.exit_code,
            timed_out="true" if usage.timed_out else "false",
        )
        with _dynamodb_errors("record_usage"):
            item.save()

    def audit_entries(self, project_id: str, session_id: str) -> list[dict[str, Any]]:
        """Config history and usage records of a session, oldest first (operators, tests)."""
        with _dynamodb_errors("audit_entries"):
            return [
                {key: value for key, value in item.attribute_values.items() if value is not None}
                for item in self._t.AuditItem.query(f"{project_id}#{session_id}")
            ]

    def pending_teardowns(self, deleted_before: str, limit: int) -> list[Tombstone]:
        S = self._t.SessionItem
        with _dynamodb_errors("pending_teardowns"):
            results = S.pending_teardown.query(
                PENDING,
                range_key_condition=S.deleted_at < deleted_before,
                limit=limit,
                page_size=min(limit, 100),
            )
            return [Tombstone(item.project_id, item.session_id, item.deleted_at) for item in results]

    def list(self, project_id: str, query: ListQuery) -> Page:
        S = self._t.SessionItem
        live = None if query.include_deleted else S.deleted_at.does_not_exist()
        user_key = f"{project_id}#{query.user_id}" if query.user_id is not None else None
        runner: Callable[..., Any]
        if user_key is not None:
            mode = "user"
            since_condition = None if query.changed_since is None else S.updated_at >= query.changed_since
            condition = _all_of(live, since_condition)

            def runner(**kwargs: Any) -> Any:
                return S.by_user.query(user_key, filter_condition=condition, **kwargs)

        elif query.changed_since is not None:
            mode = "changed"
            since = query.changed_since

            def runner(**kwargs: Any) -> Any:
                return S.by_updated.query(
                    project_id, range_key_condition=S.updated_at >= since, filter_condition=live, **kwargs
                )

        else:
            mode = "project"

            def runner(**kwargs: Any) -> Any:
                return S.query(project_id, filter_condition=live, consistent_read=True, **kwargs)

        start = (
            decode_cursor(mode, query.cursor, project_id, user_key, query.changed_since)
            if query.cursor
            else None
        )
        with _dynamodb_errors("list_sessions"):
            results = runner(
                scan_index_forward=False, limit=query.limit, page_size=query.limit, last_evaluated_key=start
            )
            items = [self._to_session(item) for item in results]
            last_key = results.last_evaluated_key
        next_cursor = encode_cursor(mode, last_key, query.changed_since) if last_key else None
        return Page(items=items, next_cursor=next_cursor)


class DynamoProjectStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def create(self, project: Project) -> None:
        P = self._t.ProjectItem
        item = P(
            project_id=project.project_id, sk="project", name=project.name, created_at=project.created_at
        )
        with _dynamodb_errors("create_project"):
            item.save(condition=P.project_id.does_not_exist())

    def get(self, project_id: str) -> Project | None:
        with _dynamodb_errors("get_project"):
            try:
                item = self._t.ProjectItem.get(project_id, "project", consistent_read=True)
            except DoesNotExist:
                return None
        return Project(project_id=item.project_id, name=item.name or "", created_at=item.created_at or "")


def _epoch_partition(copy: int) -> str:
    # Not a project id (those start with "prj_"): each copy is its own partition, so readers spread out.
    return f"_cache_epoch#{copy}"


class DynamoCacheEpochStore:
    """The cache epoch (session_service.cache_epoch) in the projects table, in `copies` partitions."""

    def __init__(self, tables: Tables, copies: int) -> None:
        self._t = tables
        self._copies = copies

    def read(self, copy: int) -> int:
        with _dynamodb_errors("read_cache_epoch"):
            try:
                item = self._t.ProjectItem.get(_epoch_partition(copy), "epoch", consistent_read=True)
            except DoesNotExist:
                return 0
        return int(item.epoch_ms or 0)

    def raise_to(self, epoch_ms: int) -> None:
        P = self._t.ProjectItem
        with _dynamodb_errors("raise_cache_epoch"):
            for copy in range(self._copies):
                try:
                    P(project_id=_epoch_partition(copy), sk="epoch").update(
                        actions=[P.epoch_ms.set(epoch_ms)],
                        condition=P.epoch_ms.does_not_exist() | (P.epoch_ms < epoch_ms),
                    )
                except PynamoDBException as error:
                    if not _condition_failed(error):  # failed condition: already at least as high
                        raise


class DynamoKeyStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    @staticmethod
    def _to_record(item: Any) -> ApiKeyRecord:
        return ApiKeyRecord(
            key_hash=item.key_hash,
            key_id=item.key_id,
            project_id=item.project_id,
            created_at=item.created_at,
            revoked_at=item.revoked_at,
        )

    def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        with _dynamodb_errors("get_api_key"):
            try:
                item = self._t.ApiKeyItem.get(key_hash, consistent_read=True)
            except DoesNotExist:
                return None
        return self._to_record(item)

    def put(self, record: ApiKeyRecord) -> None:
        K = self._t.ApiKeyItem
        item = K(
            key_hash=record.key_hash,
            key_id=record.key_id,
            project_id=record.project_id,
            created_at=record.created_at,
            revoked_at=record.revoked_at,
        )
        with _dynamodb_errors("put_api_key"):
            item.save(condition=K.key_hash.does_not_exist())

    def list_for_project(self, project_id: str) -> list[ApiKeyRecord]:
        with _dynamodb_errors("list_api_keys"):
            return [self._to_record(item) for item in self._t.ApiKeyItem.by_project.query(project_id)]

    def revoke(self, project_id: str, key_id: str, revoked_at: str) -> bool:
        K = self._t.ApiKeyItem
        with _dynamodb_errors("revoke_api_key"):
            matches = list(K.by_project.query(project_id, range_key_condition=K.key_id == key_id))
            if not matches:
                return False
            for item in matches:
                K(key_hash=item.key_hash).update(
                    actions=[K.revoked_at.set(revoked_at)], condition=K.key_hash.exists()
                )
        return True
