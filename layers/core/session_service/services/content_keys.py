"""Per-session content keys: what makes a DELETE reach the backups (crypto-shredding).

A session's metadata, its client's data encryption key and its messages are stored sealed (AES-256-GCM)
under a key that belongs to that session alone. The session keys are kept only in the keys table, which
has no point-in-time recovery and no backups; teardown deletes the session's key before it purges
anything, and from then on every copy of that session's content — the tables' PITR history, their
streams, an export — is ciphertext nobody can open.

Keys form a two-level hierarchy, as the AWS Encryption SDK's hierarchical keyring does:
- a **project key** per project, made by KMS (GenerateDataKey under the stack's key, the project id as
  encryption context) and stored wrapped by KMS in the keys table;
- a **session key** per session, 32 random bytes made here at create, stored wrapped (AES-GCM) under the
  project key, in the same transaction as the session.
So a create costs no KMS call once the project key is known, and a listing of 50 sessions costs one
BatchGetItem, not 50 KMS calls. Plaintext keys live only in this process's memory, for `cache_seconds`
(default 300 s) after they were read — never in Redis, never in a log line.

A sealed value is `format (1 byte) | nonce (12) | ciphertext+tag`; its associated data binds it to the
project, the session and what it is (`metadata`, `data_encryption_key`, `message:<id>`), so a ciphertext
copied into another session, or into another field, does not open. Format 0 is the plain JSON that code run
outside the template (no keys table configured: benchmarks, unit tests) stores; a process with keys never
accepts it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from session_service.domain.errors import ContentUnreadable, KeyDestroyed
from session_service.domain.ports import Aead, ContentKeyStore, MasterKey

__all__ = ["ContentKeys", "ContentUnreadable", "KeyDestroyed", "PlainContent"]

PLAIN = 0
KEY_BYTES = 32


def _aad(purpose: str, project_id: str, session_id: str) -> bytes:
    return f"ss1|{purpose}|{project_id}|{session_id}".encode()


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class ContentKeys:
    """Seals and opens a session's content under its own key (teardown deletes the key: ContentKeyStore)."""

    encrypted = True

    def __init__(
        self,
        store: ContentKeyStore,
        master: MasterKey,
        *,
        aead: Callable[[bytes], Aead],
        cache_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._master = master
        self._aead = aead  # one AES-256-GCM key from 32 bytes (session_service.adapters.aesgcm)
        self._ttl = cache_seconds
        self._clock = clock
        self._projects: dict[str, tuple[float, Aead]] = {}
        self._sessions: dict[tuple[str, str], tuple[float, Aead]] = {}
        self._lock = threading.Lock()

    # -- the keys ------------------------------------------------------------------------------------

    def new_session_key(self, project_id: str, session_id: str) -> bytes:
        """A new session's key, in the wrapped form the session's create transaction stores."""
        key = secrets.token_bytes(KEY_BYTES)
        wrapped = self._project_key(project_id).seal(key, _aad("session-key", project_id, session_id))
        self._remember(self._sessions, (project_id, session_id), self._aead(key))
        return wrapped

    def preload(self, project_id: str, session_ids: Iterable[str]) -> None:
        """Read the keys of several sessions in one call (a listing's page); missing ones stay missing."""
        wanted = [
            sid
            for sid in dict.fromkeys(session_ids)
            if self._cached(self._sessions, (project_id, sid)) is None
        ]
        if not wanted:
            return
        for session_id, wrapped in self._store.session_keys(project_id, wanted).items():
            self._remember(
                self._sessions, (project_id, session_id), self._unwrap(project_id, session_id, wrapped)
            )

    # -- content -------------------------------------------------------------------------------------

    def seal(self, project_id: str, session_id: str, purpose: str, value: Any) -> bytes:
        return self._session_key(project_id, session_id).seal(
            _encode(value), _aad(purpose, project_id, session_id)
        )

    def open(self, project_id: str, session_id: str, purpose: str, sealed: bytes) -> Any:
        """KeyDestroyed when the session's key is gone; ContentUnreadable when `sealed` is not this
        session's `purpose`."""
        plaintext = self._session_key(project_id, session_id).open(
            sealed, _aad(purpose, project_id, session_id)
        )
        return json.loads(plaintext)

    # -- internals -----------------------------------------------------------------------------------

    def _session_key(self, project_id: str, session_id: str) -> Aead:
        cached = self._cached(self._sessions, (project_id, session_id))
        if cached is not None:
            return cached
        wrapped = self._store.session_keys(project_id, [session_id]).get(session_id)
        if wrapped is None:
            raise KeyDestroyed(f"no key for session {session_id}")
        key = self._unwrap(project_id, session_id, wrapped)
        self._remember(self._sessions, (project_id, session_id), key)
        return key

    def _unwrap(self, project_id: str, session_id: str, wrapped: bytes) -> Aead:
        key = self._project_key(project_id).open(wrapped, _aad("session-key", project_id, session_id))
        return self._aead(key)

    def _project_key(self, project_id: str) -> Aead:
        cached = self._cached(self._projects, project_id)
        if cached is not None:
            return cached
        wrapped = self._store.project_key(project_id)
        if wrapped is None:
            plaintext, wrapped = self._master.generate(project_id)
            if not self._store.add_project_key(project_id, wrapped):  # another process stored one first
                stored = self._store.project_key(project_id)
                if stored is None:
                    raise ContentUnreadable(f"project {project_id}'s key could not be stored or read")
                plaintext = self._master.unwrap(stored, project_id)
        else:
            plaintext = self._master.unwrap(wrapped, project_id)
        key = self._aead(plaintext)
        self._remember(self._projects, project_id, key)
        return key

    def _cached(self, cache: dict[Any, tuple[float, Aead]], name: Any) -> Aead | None:
        entry = cache.get(name)
        if entry is None:
            return None
        if self._clock() >= entry[0]:
            with self._lock:
                cache.pop(name, None)
            return None
        return entry[1]

    def _remember(self, cache: dict[Any, tuple[float, Aead]], name: Any, key: Aead) -> None:
        with self._lock:
            cache[name] = (self._clock() + self._ttl, key)


class PlainContent:
    """Outside the template (no keys table and KMS key configured: benchmarks, unit tests) content is
    stored as plain JSON in the same format-tagged form, so the same code paths run. The template always
    configures ContentKeys; a process with keys never opens a plain value."""

    encrypted = False

    def new_session_key(self, project_id: str, session_id: str) -> bytes | None:
        return None

    def preload(self, project_id: str, session_ids: Iterable[str]) -> None:
        return None

    def seal(self, project_id: str, session_id: str, purpose: str, value: Any) -> bytes:
        return bytes([PLAIN]) + _encode(value)

    def open(self, project_id: str, session_id: str, purpose: str, sealed: bytes) -> Any:
        if not sealed or sealed[0] != PLAIN:
            raise ContentUnreadable("an encrypted value, and this process has no keys configured")
        return json.loads(sealed[1:])
