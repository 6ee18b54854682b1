"""The API keys table (ApiKeysTable): a key's hash, its project, and when it was revoked.

Declared once, here; bound to its table by session_service.adapters.dynamodb.tables.Tables."""

from __future__ import annotations

from pynamodb.attributes import UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex
from pynamodb.models import Model

from session_service.adapters.dynamodb.models.base import index_meta


class ByProject(GlobalSecondaryIndex):
    Meta = index_meta("by_project")
    project_id = UnicodeAttribute(hash_key=True)
    key_id = UnicodeAttribute(range_key=True)


class ApiKeyItem(Model):
    key_hash = UnicodeAttribute(hash_key=True)
    key_id = UnicodeAttribute()
    project_id = UnicodeAttribute()
    created_at = UnicodeAttribute()
    revoked_at = UnicodeAttribute(null=True)
    by_project = ByProject()
