"""The sessions table (SessionsTable): a session per item, keyed by its shard (keys.session_partition), and
its four indexes.

Declared once, here; bound to its table by session_service.adapters.dynamodb.tables.Tables."""

from __future__ import annotations

from pynamodb.attributes import BinaryAttribute, JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model

from session_service.adapters.dynamodb.models.base import index_meta


class ByUser(GlobalSecondaryIndex):
    """A user's sessions, newest first, spread over the session shards."""

    Meta = index_meta("by_user")
    user_key = UnicodeAttribute(hash_key=True)
    session_id = UnicodeAttribute(range_key=True)


class ByUpdated(GlobalSecondaryIndex):
    """A project's sessions by last change (changed_since), per session shard."""

    Meta = index_meta("by_updated")
    pk = UnicodeAttribute(hash_key=True)
    updated_key = UnicodeAttribute(range_key=True)


class PendingTeardown(GlobalSecondaryIndex):
    """Sparse and write-sharded: only tombstones not yet torn down carry `teardown_pending`."""

    Meta = index_meta("pending_teardown", IncludeProjection(["project_id"]))
    teardown_pending = UnicodeAttribute(hash_key=True)
    deleted_at = UnicodeAttribute(range_key=True)


class ByActivity(GlobalSecondaryIndex):
    """A project's recently active sessions per session shard (sparse: only active ones)."""

    Meta = index_meta("by_activity")
    pk = UnicodeAttribute(hash_key=True)
    active_key = UnicodeAttribute(range_key=True)


class SessionItem(Model):
    pk = UnicodeAttribute(hash_key=True)  # keys.session_partition(project_id, session_id)
    session_id = UnicodeAttribute(range_key=True)
    project_id = UnicodeAttribute()
    user_id = UnicodeAttribute()
    user_key = UnicodeAttribute()  # keys.user_partition(...)
    tag = UnicodeAttribute(null=True)
    config = JSONAttribute(null=True)  # purged by teardown
    # Sealed under the session's key (session_service.services.content_keys); purged by teardown.
    sealed_metadata = BinaryAttribute(attr_name="metadata_sealed", null=True, legacy_encoding=False)
    sealed_data_key = BinaryAttribute(
        attr_name="data_encryption_key_sealed", null=True, legacy_encoding=False
    )
    # The agent's state, sealed like the metadata, with its own version (absent: 0); purged by teardown.
    sealed_agent_state = BinaryAttribute(attr_name="agent_state_sealed", null=True, legacy_encoding=False)
    agent_state_version = NumberAttribute(null=True)
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
    last_active_at = UnicodeAttribute(null=True)  # a message or an execute; written at most once a minute
    active_key = UnicodeAttribute(null=True)  # keys.updated_key(last_active_at, session_id)
    messages_purged = NumberAttribute(null=True)  # teardown's progress through the messages
    by_activity = ByActivity()
    by_user = ByUser()
    by_updated = ByUpdated()
    pending_teardown = PendingTeardown()
