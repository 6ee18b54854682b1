"""Reading the sessions table's stream records (the Lambda event source mapping's DynamoDB JSON).

Only the attributes the consumers need are decoded; the names are the session item's
(adapters.dynamodb.tables).
"""

from __future__ import annotations

from typing import Any

from session_service.cache_sync import SessionChange


def _string(image: dict[str, Any], name: str) -> str | None:
    value = image.get(name)
    return value.get("S") if isinstance(value, dict) else None


def _number(image: dict[str, Any], name: str) -> int | None:
    value = image.get(name)
    raw = value.get("N") if isinstance(value, dict) else None
    return int(raw) if raw is not None else None


def session_change(record: dict[str, Any]) -> SessionChange | None:
    """The change a stream record describes, or None when the record is not about a session item."""
    stream = record.get("dynamodb") or {}
    new = stream.get("NewImage") or {}
    old = stream.get("OldImage") or {}
    image = new or old
    project_id, session_id = _string(image, "project_id"), _string(image, "session_id")
    version = _number(image, "version")
    if not project_id or not session_id or version is None:
        return None
    deleted = record.get("eventName") == "REMOVE" or _string(new, "deleted_at") is not None
    return SessionChange(project_id=project_id, session_id=session_id, version=version, deleted=deleted)
