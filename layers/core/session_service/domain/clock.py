"""Timestamps: ISO-8601 UTC with fixed-width microseconds, so string order is time order in DynamoDB."""

from __future__ import annotations

import time
from datetime import UTC, datetime

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_FORMAT)


def utc_now_iso() -> str:
    return iso(now())


def now_ms() -> int:
    """Wall-clock milliseconds (cache fills and the cache epoch compare these across processes)."""
    return int(time.time() * 1000)


def parse_iso(value: str) -> datetime:
    """Parse a client-given ISO-8601 time; a time without an offset is taken as UTC."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
