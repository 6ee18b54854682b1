"""Reading the sessions table's stream records (the Lambda event source mapping's DynamoDB JSON).

Only the attributes the consumers need are decoded; the names are the session item's
(adapters.dynamodb.tables).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from session_service.domain.events import (
    AGENT_STATE_UPDATED,
    MESSAGE_CREATED,
    SESSION_CREATED,
    SESSION_DELETED,
    SESSION_UPDATED,
    TEARDOWN_COMPLETED,
    DomainEvent,
    SessionChange,
)


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
    version += _number(image, "agent_state_version") or 0  # the cache's order (Session.cache_version)
    deleted = record.get("eventName") == "REMOVE" or _string(new, "deleted_at") is not None
    return SessionChange(project_id=project_id, session_id=session_id, version=version, deleted=deleted)


def session_event(record: dict[str, Any]) -> DomainEvent | None:
    """The lifecycle event a sessions-table record stands for (None: a change no one is told about, such as
    an activity stamp or a sandbox recorded)."""
    stream = record.get("dynamodb") or {}
    new, old = stream.get("NewImage") or {}, stream.get("OldImage") or {}
    project_id, session_id = _string(new or old, "project_id"), _string(new or old, "session_id")
    if not project_id or not session_id or not new:
        return None  # a REMOVE: the tombstone's TTL ran out long after everyone was told
    event_id = str(record.get("eventID") or "")
    if not old:
        data = {
            "user_id": _string(new, "user_id"),
            "tag": _string(new, "tag"),
            "version": _number(new, "version"),
        }
        return DomainEvent(
            event_id, SESSION_CREATED, project_id, session_id, _string(new, "created_at") or "", data=data
        )
    deleted_at = _string(new, "deleted_at")
    if deleted_at and not _string(old, "deleted_at"):
        return DomainEvent(
            event_id, SESSION_DELETED, project_id, session_id, deleted_at, data={"deleted_at": deleted_at}
        )
    if _string(new, "teardown_state") == "done" and _string(old, "teardown_state") != "done":
        completed_at = _string(new, "teardown_completed_at") or ""
        data = {
            "sandboxes_killed": _number(new, "sandboxes_killed") or 0,
            "messages_purged": _number(new, "messages_purged") or 0,
            "completed_at": completed_at,
        }
        return DomainEvent(event_id, TEARDOWN_COMPLETED, project_id, session_id, completed_at, data=data)
    state, state_before = _number(new, "agent_state_version"), _number(old, "agent_state_version") or 0
    if not deleted_at and state is not None and state > state_before:
        written = stream.get("ApproximateCreationDateTime")  # the write sets no time of its own
        at = datetime.fromtimestamp(float(written), tz=UTC).isoformat() if written else ""
        return DomainEvent(
            event_id, AGENT_STATE_UPDATED, project_id, session_id, at, data={"agent_state_version": state}
        )
    version, previous = _number(new, "version"), _number(old, "version")
    if not deleted_at and version is not None and previous is not None and version > previous:
        return DomainEvent(
            event_id,
            SESSION_UPDATED,
            project_id,
            session_id,
            _string(new, "updated_at") or "",
            data={"version": version},
        )
    return None


def message_event(record: dict[str, Any]) -> DomainEvent | None:
    """message.created for a new message (not its local-id claim or the seq counter, nor a purge)."""
    if record.get("eventName") != "INSERT":
        return None
    new = (record.get("dynamodb") or {}).get("NewImage") or {}
    if not (_string(new, "sk") or "").startswith("m#"):
        return None
    project_id, session_id, seq = _string(new, "project_id"), _string(new, "session_id"), _number(new, "seq")
    if not project_id or not session_id or seq is None:
        return None
    data = {"id": _string(new, "message_id"), "seq": seq, "local_id": _string(new, "local_id")}
    return DomainEvent(
        str(record.get("eventID") or ""),
        MESSAGE_CREATED,
        project_id,
        session_id,
        _string(new, "created_at") or "",
        seq,
        data,
    )


def domain_event(record: dict[str, Any], messages_table: str) -> DomainEvent | None:
    """The event of a record from either stream the notifier reads (told apart by the record's table)."""
    source = str(record.get("eventSourceARN") or "")
    if messages_table and f":table/{messages_table}/stream/" in source:
        return message_event(record)
    return session_event(record)
