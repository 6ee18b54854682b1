"""The content keys table (KeysTable): wrapped project and session keys (no PITR, no backups).

Declared once, here; bound to its table by session_service.adapters.dynamodb.tables.Tables."""

from __future__ import annotations

from pynamodb.attributes import BinaryAttribute, UnicodeAttribute
from pynamodb.models import Model


class KeyItem(Model):
    """The keys table (no PITR, no backups): project keys wrapped by KMS
    (pk=keys.project_key_partition) and session keys wrapped by their project's key
    (pk=keys.session_key_partition)."""

    pk = UnicodeAttribute(hash_key=True)
    wrapped = BinaryAttribute(legacy_encoding=False)
    created_at = UnicodeAttribute(null=True)
