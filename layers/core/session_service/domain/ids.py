"""Opaque, unguessable, time-sortable identifiers: a readable prefix + a lowercase ULID.

48 bits of millisecond time then 80 random bits, Crockford base32. Lowercase keeps the sort order of the
canonical uppercase form, so DynamoDB range keys sort by creation time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_ULID = r"[0-9a-hjkmnp-tv-z]{26}"
SESSION_ID = re.compile(rf"^ses_{_ULID}$")


_last = [0, 0]  # (ms, random) of the last id made here: ids made in one millisecond still sort in order
_lock = threading.Lock()


def ulid(now_ms: int | None = None) -> str:
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if ms <= _last[0] and _last[1] < (1 << 80) - (1 << 16):
            ms, rand = _last[0], _last[1] + 1 + secrets.randbits(16)
        else:
            rand = secrets.randbits(80)
        _last[0], _last[1] = ms, rand
    value = (ms << 80) | rand
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def forget_last() -> None:
    """Start afresh (after a SnapStart restore: the last id made belongs to the snapshot, not to us)."""
    with _lock:
        _last[0], _last[1] = 0, 0


def new_session_id() -> str:
    return f"ses_{ulid()}"


def new_project_id() -> str:
    return f"prj_{ulid()}"


def is_session_id(value: str) -> bool:
    return bool(SESSION_ID.match(value))


def hash_key(secret: str) -> str:
    """How an API key or a session token is stored and looked up: its SHA-256, never the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()
