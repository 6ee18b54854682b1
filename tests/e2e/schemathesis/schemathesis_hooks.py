"""Schemathesis hooks for tests/e2e/test_schemathesis.py (loaded by schemathesis.toml's `hooks`).

Generated Idempotency-Keys are made unique (a per-run suffix): the generator repeats short values ("0",
"00", 255 zeros) across cases, and a key sent again with another body is, as documented, 422
`idempotency_key_reused`, which positive_data_acceptance would report although the API is right. A key's
length is kept where it is a boundary (near 255), and a key out of the documented 1..255 characters is left
as generated, so negative cases stay negative (the service refuses them: 422).
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import schemathesis

HEADER = "idempotency-key"
MAX_LENGTH = 255
_RUN = uuid.uuid4().hex[:12]
_SUFFIX = f":{_RUN}" + "{:08d}"
_count = itertools.count()


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Before every request of every phase (the map_* hooks do not reach the coverage phase's cases)."""
    headers = case.headers or {}
    for name, value in headers.items():
        if name.lower() == HEADER and isinstance(value, str):
            suffix = _SUFFIX.format(next(_count))
            if 1 <= len(value) <= MAX_LENGTH - len(suffix):
                headers[name] = value + suffix
            elif MAX_LENGTH - len(suffix) < len(value) <= MAX_LENGTH:  # keep a boundary length as it is
                headers[name] = value[: len(value) - len(suffix)] + suffix
            break
