"""The tools table (ToolsTable): catalog tools and the copies of a project's catalog version.

Declared once, here; bound to its table by session_service.adapters.dynamodb.tables.Tables."""

from __future__ import annotations

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model


class ToolItem(Model):
    """Catalog tools (pk=<project_id>, sk="tool#<name>") and the catalog version's copies
    (pk=keys.catalog_version_partition(...), sk="version")."""

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
