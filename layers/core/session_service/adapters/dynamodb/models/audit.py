"""The audit table (AuditTable): a session's config history and usage records, kept after teardown.

Declared once, here; bound to its table by session_service.adapters.dynamodb.tables.Tables."""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model


class AuditItem(Model):
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
