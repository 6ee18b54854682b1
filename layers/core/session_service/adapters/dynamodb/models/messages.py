"""The messages table (MessagesTable): a session's messages, local-id claims and sequence counter.

Declared once, here; bound to its table by session_service.adapters.dynamodb.tables.Tables."""

from __future__ import annotations

from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.models import Model


class MessageItem(Model):
    """A session's messages (sk="m#<seq, 12 digits>"), its local-id claims (sk="l#<local_id>") and its
    sequence counter (sk="#counter"), all in the session's own partition."""

    session_key = UnicodeAttribute(hash_key=True)  # keys.audit_partition(project_id, session_id)
    sk = UnicodeAttribute(range_key=True)
    message_id = UnicodeAttribute(null=True)
    seq = NumberAttribute(null=True)
    local_id = UnicodeAttribute(null=True)
    # Sealed under the session's key (session_service.services.content_keys).
    sealed_content = BinaryAttribute(attr_name="content_sealed", null=True, legacy_encoding=False)
    created_at = UnicodeAttribute(null=True)
    project_id = UnicodeAttribute(null=True)
    session_id = UnicodeAttribute(null=True)
    last_seq = NumberAttribute(null=True)  # the counter item
