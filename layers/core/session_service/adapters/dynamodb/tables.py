"""The PynamoDB model classes, bound to one configuration's table names, endpoint and timeouts, and the one
place that turns PynamoDB's errors into domain outcomes.

Table names come from the environment, so the classes are built per configuration (`Tables(settings)`),
not at import time. A lost condition is the caller's business (TagTaken, WriteConflict, a 404); anything
else that stops DynamoDB from answering is DependencyUnavailable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pynamodb.attributes import BinaryAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, KeysOnlyProjection
from pynamodb.models import Model

from session_service.errors import DependencyUnavailable
from session_service.observability import logger
from session_service.settings import Settings

CONDITION_FAILED = "ConditionalCheckFailedException"
_LOST_RACE = {"ConditionalCheckFailed", "TransactionConflict"}


@contextmanager
def dynamodb_errors(operation: str) -> Iterator[None]:
    """Anything PynamoDB raises that we did not turn into a domain outcome means DynamoDB is unavailable."""
    try:
        yield
    except PynamoDBException as error:
        logger.exception("DynamoDB call failed", extra={"operation": operation})
        raise DependencyUnavailable("the session store is unavailable; retry the request") from error


def condition_failed(error: PynamoDBException) -> bool:
    """Whether DynamoDB refused the write's condition. Not PynamoDB's `cause_response_code`: when the call
    timed out, the cause carries `response = None` and that property raises AttributeError, which escaped
    `dynamodb_errors` and turned a DynamoDB timeout into a 500 (found by the fault suite, moto hung)."""
    response = getattr(error.cause, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == CONDITION_FAILED


def lost_race(error: TransactWriteError) -> bool:
    """A transaction cancelled because a condition failed or another transaction got there first."""
    reasons = [reason.code for reason in (error.cancellation_reasons or []) if reason is not None]
    return any(code in _LOST_RACE for code in reasons)


def _index_meta(name: str, projection: Any = None) -> type:
    return type("Meta", (), {"index_name": name, "projection": projection or AllProjection()})


class Tables:
    """The model classes of every table (see template.yaml for the key schemas)."""

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

        def table_meta(name: str) -> type:
            return type("Meta", (), {"table_name": name, **meta})

        class ByUser(GlobalSecondaryIndex):
            """A user's sessions, newest first, spread over the session shards."""

            Meta = _index_meta("by_user")
            user_key = UnicodeAttribute(hash_key=True)
            session_id = UnicodeAttribute(range_key=True)

        class ByUpdated(GlobalSecondaryIndex):
            """A project's sessions by last change (changed_since), per session shard."""

            Meta = _index_meta("by_updated")
            pk = UnicodeAttribute(hash_key=True)
            updated_key = UnicodeAttribute(range_key=True)

        class PendingTeardown(GlobalSecondaryIndex):
            """Sparse and write-sharded: only tombstones not yet torn down carry `teardown_pending`."""

            Meta = _index_meta("pending_teardown", IncludeProjection(["project_id"]))
            teardown_pending = UnicodeAttribute(hash_key=True)
            deleted_at = UnicodeAttribute(range_key=True)

        class ByActivity(GlobalSecondaryIndex):
            """A project's recently active sessions per session shard (sparse: only active ones)."""

            Meta = _index_meta("by_activity")
            pk = UnicodeAttribute(hash_key=True)
            active_key = UnicodeAttribute(range_key=True)

        class SessionItem(Model):
            Meta = table_meta(settings.sessions_table)  # type: ignore[assignment]
            pk = UnicodeAttribute(hash_key=True)  # keys.session_partition(project_id, session_id)
            session_id = UnicodeAttribute(range_key=True)
            project_id = UnicodeAttribute()
            user_id = UnicodeAttribute()
            user_key = UnicodeAttribute()  # keys.user_partition(...)
            tag = UnicodeAttribute(null=True)
            config = JSONAttribute(null=True)  # purged by teardown
            # Sealed under the session's key (session_service.content_keys); purged by teardown.
            sealed_metadata = BinaryAttribute(attr_name="metadata_sealed", null=True, legacy_encoding=False)
            sealed_data_key = BinaryAttribute(
                attr_name="data_encryption_key_sealed", null=True, legacy_encoding=False
            )
            key_destroyed_at = UnicodeAttribute(null=True)  # teardown's first step
            version = NumberAttribute()
            created_at = UnicodeAttribute()
            updated_at = UnicodeAttribute()
            updated_key = UnicodeAttribute()  # keys.updated_key(updated_at, session_id)
            deleted_at = UnicodeAttribute(null=True)
            delete_token = UnicodeAttribute(null=True)
            teardown_state = UnicodeAttribute(null=True)
            teardown_pending = UnicodeAttribute(null=True)  # keys.pending_partition(session_id)
            teardown_completed_at = UnicodeAttribute(null=True)
            sandboxes_killed = NumberAttribute(null=True)
            sandbox_id = UnicodeAttribute(null=True)
            expires_at = NumberAttribute(null=True)  # DynamoDB TTL: the tombstone's end
            last_active_at = UnicodeAttribute(
                null=True
            )  # a message or an execute; written at most once a minute
            active_key = UnicodeAttribute(null=True)  # keys.updated_key(last_active_at, session_id)
            messages_purged = NumberAttribute(null=True)  # teardown's progress through the messages
            by_activity = ByActivity()
            by_user = ByUser()
            by_updated = ByUpdated()
            pending_teardown = PendingTeardown()

        class ProjectItem(Model):
            """Project records (pk=<project_id>, sk="project"), tag claims (pk=keys.tag_partition, sk="tag")
            and the cache epoch's copies (pk="_cache_epoch#<n>", sk="epoch") share the projects table."""

            Meta = table_meta(settings.projects_table)  # type: ignore[assignment]
            pk = UnicodeAttribute(hash_key=True)
            sk = UnicodeAttribute(range_key=True)
            name = UnicodeAttribute(null=True)
            created_at = UnicodeAttribute(null=True)
            session_id = UnicodeAttribute(null=True)
            epoch_ms = NumberAttribute(null=True)
            # A project's own rate limits (requests a minute); absent: the stack's defaults.
            rate_limit_per_minute = NumberAttribute(null=True)
            compute_rate_limit_per_minute = NumberAttribute(null=True)

        class AuditItem(Model):
            Meta = table_meta(settings.audit_table)  # type: ignore[assignment]
            session_key = UnicodeAttribute(hash_key=True)  # keys.audit_partition(project_id, session_id)
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
            tool = UnicodeAttribute(null=True)

        class ByProject(GlobalSecondaryIndex):
            Meta = _index_meta("by_project")
            project_id = UnicodeAttribute(hash_key=True)
            key_id = UnicodeAttribute(range_key=True)

        class ApiKeyItem(Model):
            Meta = table_meta(settings.api_keys_table)  # type: ignore[assignment]
            key_hash = UnicodeAttribute(hash_key=True)
            key_id = UnicodeAttribute()
            project_id = UnicodeAttribute()
            created_at = UnicodeAttribute()
            revoked_at = UnicodeAttribute(null=True)
            by_project = ByProject()

        class BySession(GlobalSecondaryIndex):
            """A session's tokens (teardown purges them); KEYS_ONLY carries the table key, token_hash."""

            Meta = _index_meta("by_session", KeysOnlyProjection())
            session_key = UnicodeAttribute(hash_key=True)
            token_id = UnicodeAttribute(range_key=True)

        class TokenItem(Model):
            Meta = table_meta(settings.tokens_table)  # type: ignore[assignment]
            token_hash = UnicodeAttribute(hash_key=True)
            token_id = UnicodeAttribute()
            project_id = UnicodeAttribute()
            session_id = UnicodeAttribute()
            session_key = UnicodeAttribute()  # keys.audit_partition(project_id, session_id)
            created_at = UnicodeAttribute()
            expires_at = NumberAttribute()  # epoch seconds; DynamoDB TTL
            by_session = BySession()

        class MessageItem(Model):
            """A session's messages (sk="m#<seq, 12 digits>"), its local-id claims (sk="l#<local_id>") and its
            sequence counter (sk="#counter"), all in the session's own partition."""

            Meta = table_meta(settings.messages_table)  # type: ignore[assignment]
            session_key = UnicodeAttribute(hash_key=True)  # keys.audit_partition(project_id, session_id)
            sk = UnicodeAttribute(range_key=True)
            message_id = UnicodeAttribute(null=True)
            seq = NumberAttribute(null=True)
            local_id = UnicodeAttribute(null=True)
            # Sealed under the session's key (session_service.content_keys).
            sealed_content = BinaryAttribute(attr_name="content_sealed", null=True, legacy_encoding=False)
            created_at = UnicodeAttribute(null=True)
            project_id = UnicodeAttribute(null=True)
            session_id = UnicodeAttribute(null=True)
            last_seq = NumberAttribute(null=True)  # the counter item

        class ByProjectScope(GlobalSecondaryIndex):
            Meta = _index_meta("by_project", KeysOnlyProjection())
            project_scope = UnicodeAttribute(hash_key=True)
            connection_id = UnicodeAttribute(range_key=True)

        class BySessionScope(GlobalSecondaryIndex):
            Meta = _index_meta("by_session", KeysOnlyProjection())
            session_scope = UnicodeAttribute(hash_key=True)
            connection_id = UnicodeAttribute(range_key=True)

        class ConnectionItem(Model):
            """A live-feed connection: a project's (project_scope set) or a session's (session_scope)."""

            Meta = table_meta(settings.connections_table)  # type: ignore[assignment]
            connection_id = UnicodeAttribute(hash_key=True)
            project_id = UnicodeAttribute()
            session_id = UnicodeAttribute(null=True)
            project_scope = UnicodeAttribute(null=True)  # <project_id> for an API-key connection
            session_scope = UnicodeAttribute(null=True)  # keys.audit_partition(...) for a token connection
            connected_at = UnicodeAttribute()
            expires_at = NumberAttribute()  # DynamoDB TTL
            by_project = ByProjectScope()
            by_session = BySessionScope()

        class ToolItem(Model):
            """Catalog tools (pk=<project_id>, sk="tool#<name>") and the catalog version's copies
            (pk=keys.catalog_version_partition(...), sk="version")."""

            Meta = table_meta(settings.tools_table)  # type: ignore[assignment]
            pk = UnicodeAttribute(hash_key=True)
            sk = UnicodeAttribute(range_key=True)
            description = UnicodeAttribute(null=True)
            input_schema = JSONAttribute(null=True)
            command = UnicodeAttribute(null=True)
            tags = JSONAttribute(null=True)
            timeout_s = NumberAttribute(null=True)
            created_at = UnicodeAttribute(null=True)
            updated_at = UnicodeAttribute(null=True)
            version = NumberAttribute(null=True)

        class KeyItem(Model):
            """The keys table (no PITR, no backups): project keys wrapped by KMS
            (pk=keys.project_key_partition) and session keys wrapped by their project's key
            (pk=keys.session_key_partition)."""

            Meta = table_meta(settings.keys_table)  # type: ignore[assignment]
            pk = UnicodeAttribute(hash_key=True)
            wrapped = BinaryAttribute(legacy_encoding=False)
            created_at = UnicodeAttribute(null=True)

        self.SessionItem = SessionItem
        self.KeyItem = KeyItem
        self.ProjectItem = ProjectItem
        self.AuditItem = AuditItem
        self.ApiKeyItem = ApiKeyItem
        self.TokenItem = TokenItem
        self.ToolItem = ToolItem
        self.MessageItem = MessageItem
        self.ConnectionItem = ConnectionItem
