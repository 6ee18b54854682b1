"""Bounded command output: what a command prints is capped while it streams, never buffered whole.

Each of stdout and stderr keeps at most `cap` bytes of UTF-8 (default 1 MiB, at most 2 MiB, per stack) and
counts every byte it was sent. A second, fixed bound keeps the response deliverable whatever the bytes are:
a synchronous Lambda response is at most 6,291,556 bytes of JSON, and output reaches it escaped twice (once
in the API's JSON body, once more as the proxy response's `body` string), so a control character costs 7
bytes there and a newline 3. Each stream may add at most WIRE_CEILING bytes to the response (2.75 MiB, both
5.5 MiB), so only output full of control characters or non-ASCII text is cut before its byte cap.

Output is text: bytes that are not UTF-8 become U+FFFD (the E2B SDK decodes with errors="replace"), and the
byte counts are of that decoded text in UTF-8 (an invalid byte counts as U+FFFD's 3 bytes).

Listings get the same care: a page stops early when its items would pass PAGE_WIRE_BUDGET on the wire, and
says there is more (a cursor, or has_more), however large each item may be.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

DEFAULT_OUTPUT_CAP = 1024 * 1024
MAX_OUTPUT_CAP = 2 * 1024 * 1024
WIRE_CEILING = 2_883_584  # 2.75 MiB per stream of the 6,291,556-byte Lambda response
# What a page's items may add to a response, leaving its envelope and headers ~1 MiB of the 6,291,556 bytes.
PAGE_WIRE_BUDGET = 5 * 1024 * 1024


def wire_length(text: str) -> int:
    """Bytes `text` adds to a Lambda proxy response: JSON-escaped in the body, then again in `body`."""
    return len(json.dumps(json.dumps(text)[1:-1])) - 2


def json_wire_length(value: Any) -> int:
    """Bytes a JSON value adds to a Lambda proxy response: serialised in the body, then escaped in `body`."""
    return len(json.dumps(json.dumps(value, separators=(",", ":")))) - 2


def items_that_fit(items: Sequence[Any], budget: int = PAGE_WIRE_BUDGET) -> int:
    """How many leading items (JSON-ready) a page can carry within `budget` on the wire; at least one, so
    that a page always moves the cursor on. A page cut short says there is more (its cursor), never 500s."""
    # The usual page: escaping the JSON text (ASCII, ensure_ascii) at most doubles it, so one dump decides.
    if 2 * len(json.dumps(list(items), separators=(",", ":"))) <= budget:
        return len(items)
    used = 0
    for count, item in enumerate(items):
        used += json_wire_length(item) + 1  # and its comma
        if used > budget and count > 0:
            return count
    return len(items)


class BoundedOutput:
    """One stream of a command: keeps a prefix within both bounds, counts everything."""

    def __init__(self, cap: int = DEFAULT_OUTPUT_CAP, wire_ceiling: int = WIRE_CEILING) -> None:
        self._cap = cap
        self._ceiling = wire_ceiling
        self._kept: list[str] = []
        self._bytes = 0
        self._wire = 0
        self.total_bytes = 0
        self.truncated = False

    def feed(self, chunk: str) -> None:
        size = len(chunk.encode())
        self.total_bytes += size
        if self.truncated or not chunk:
            return
        if self._fits(chunk, size):
            self._keep(chunk, size)
            return
        low, high = 0, len(chunk)  # the longest prefix within both bounds (both grow with the prefix)
        while low < high:
            middle = (low + high + 1) // 2
            if self._fits(chunk[:middle], len(chunk[:middle].encode())):
                low = middle
            else:
                high = middle - 1
        prefix = chunk[:low]
        self._keep(prefix, len(prefix.encode()))
        self.truncated = True

    def _fits(self, text: str, size: int) -> bool:
        return self._bytes + size <= self._cap and self._wire + wire_length(text) <= self._ceiling

    def _keep(self, text: str, size: int) -> None:
        self._kept.append(text)
        self._bytes += size
        self._wire += wire_length(text)

    @property
    def text(self) -> str:
        return "".join(self._kept)
