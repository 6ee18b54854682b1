"""Domain events: what the live feed sends to connected clients and what other systems get on the event
bus. Derived from the tables' streams (adapters.dynamodb.streams), never from the request path, so a
crash after a commit still notifies; a record delivered twice makes the same event (the stream record's
id), which clients drop by `id`.

Feed frame (JSON text): {"id", "type", "session_id", "seq"?, "at", "data"} — ids and small fields, never
contents. Event bus entry: Source EVENT_SOURCE (reverse-DNS), DetailType = type, Detail = {"event_id",
"project_id", "session_id", "occurred_at", "schema_version", **data}; only the lifecycle's end is
published there (BUS_TYPES).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

SESSION_CREATED = "session.created"
SESSION_UPDATED = "session.updated"
AGENT_STATE_UPDATED = "session.agent_state_updated"
SESSION_DELETED = "session.deleted"
TEARDOWN_COMPLETED = "session.teardown_completed"
MESSAGE_CREATED = "message.created"
BUS_TYPES = frozenset({SESSION_DELETED, TEARDOWN_COMPLETED})
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DomainEvent:
    event_id: str
    type: str
    project_id: str
    session_id: str
    at: str
    seq: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def frame(self) -> str:
        body: dict[str, Any] = {"id": self.event_id, "type": self.type, "session_id": self.session_id}
        if self.seq is not None:
            body["seq"] = self.seq
        body["at"] = self.at
        body["data"] = self.data
        return json.dumps(body, separators=(",", ":"))

    def detail(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "project_id": self.project_id,
            "session_id": self.session_id,
            "occurred_at": self.at,
            "schema_version": SCHEMA_VERSION,
            **self.data,
        }


@dataclass(frozen=True)
class SessionChange:
    """What the cache needs to know of one committed change of a session item."""

    project_id: str
    session_id: str
    version: int
    deleted: bool  # tombstoned, or the item is gone
