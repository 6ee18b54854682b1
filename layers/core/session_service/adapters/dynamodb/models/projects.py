"""The projects table (ProjectsTable): project records, tag claims and the cache epoch's copies.

Declared once, here; bound to its table by session_service.adapters.dynamodb.tables.Tables."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.models import Model


class ProjectItem(Model):
    """Project records (pk=<project_id>, sk="project"), tag claims (pk=keys.tag_partition, sk="tag")
    and the cache epoch's copies (pk="_cache_epoch#<n>", sk="epoch") share the projects table."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(null=True)
    session_id = UnicodeAttribute(null=True)
    epoch_ms = NumberAttribute(null=True)
    # A project's own rate limits (requests a minute); absent: the stack's defaults.
    rate_limit_per_minute = NumberAttribute(null=True)
    compute_rate_limit_per_minute = NumberAttribute(null=True)
