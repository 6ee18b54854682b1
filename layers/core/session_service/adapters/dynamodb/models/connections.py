"""The live-feed connections table (ConnectionsTable).

Declared once, here; bound to its table by session_service.adapters.dynamodb.tables.Tables."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from session_service.adapters.dynamodb.models.base import index_meta


class ByProjectScope(GlobalSecondaryIndex):
    Meta = index_meta("by_project", KeysOnlyProjection())
    project_scope = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute(range_key=True)


class BySessionScope(GlobalSecondaryIndex):
    Meta = index_meta("by_session", KeysOnlyProjection())
    session_scope = UnicodeAttribute(hash_key=True)
    connection_id = UnicodeAttribute(range_key=True)


class ConnectionItem(Model):
    """A live-feed connection: a project's (project_scope set) or a session's (session_scope)."""

    connection_id = UnicodeAttribute(hash_key=True)
    project_id = UnicodeAttribute()
    session_id = UnicodeAttribute(null=True)
    project_scope = UnicodeAttribute(null=True)  # <project_id> for an API-key connection
    session_scope = UnicodeAttribute(null=True)  # keys.audit_partition(...) for a token connection
    connected_at = UnicodeAttribute()
    expires_at = NumberAttribute()  # DynamoDB TTL
    by_project = ByProjectScope()
    by_session = BySessionScope()
