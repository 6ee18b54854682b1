"""Domain events on the stack's EventBridge bus (events.BUS_TYPES: the end of a session's lifecycle)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from session_service.adapters.aws import aws_client
from session_service.domain.errors import FeedUnavailable
from session_service.domain.events import DomainEvent
from session_service.settings import Settings


class EventBridgePublisher:
    def __init__(self, settings: Settings) -> None:
        self._bus = settings.event_bus_name
        self._source = settings.event_source
        self._client = aws_client("events", settings, connect=1, read=3, attempts=3)

    def publish(self, events: list[DomainEvent]) -> None:
        entries: list[dict[str, Any]] = [
            {
                "Source": self._source,
                "DetailType": event.type,
                "Detail": json.dumps(event.detail(), separators=(",", ":")),
                "EventBusName": self._bus,
                "Resources": [],
            }
            for event in events
        ]
        try:
            reply = self._client.put_events(Entries=entries)
        except (BotoCoreError, ClientError) as error:
            raise FeedUnavailable(f"put_events failed: {error!r}") from error
        if reply.get("FailedEntryCount"):
            raise FeedUnavailable(f"put_events refused entries: {reply.get('Entries')}")
