"""The session tokens table (TokensTable): a token's hash and the one session it reaches.

Declared once, here; bound to its table by session_service.adapters.dynamodb.tables.Tables."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from session_service.adapters.dynamodb.models.base import index_meta


class BySession(GlobalSecondaryIndex):
    """A session's tokens (teardown purges them); KEYS_ONLY carries the table key, token_hash."""

    Meta = index_meta("by_session", KeysOnlyProjection())
    session_key = UnicodeAttribute(hash_key=True)
    token_id = UnicodeAttribute(range_key=True)


class TokenItem(Model):
    token_hash = UnicodeAttribute(hash_key=True)
    token_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    session_id = UnicodeAttribute()
    session_key = UnicodeAttribute()  # keys.audit_partition(project_id, session_id)
    created_at = UnicodeAttribute()
    expires_at = NumberAttribute()  # epoch seconds; DynamoDB TTL
    by_session = BySession()
