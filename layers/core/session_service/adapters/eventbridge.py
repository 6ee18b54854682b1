"""Domain events on the stack's EventBridge bus (events.BUS_TYPES: the end of a session's lifecycle)."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from session_service.domain.errors import FeedUnavailable
from session_service.domain.events import DomainEvent
from session_service.settings import Settings


class EventBridgePublisher:
    def __init__(self, settings: Settings) -> None:
        self._bus = settings.event_bus_name
        self._source = settings.event_source
        self._client = boto3.client(
            "events",
            endpoint_url=settings.aws_endpoint_url,
            region_name=settings.region,
            config=Config(connect_timeout=1, read_timeout=3, retries={"max_attempts": 3, "mode": "standard"}),
        )

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
