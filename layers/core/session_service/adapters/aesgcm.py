"""AES-256-GCM for the content keys (session_service.services.content_keys), with the `cryptography` package.

Imported on first use: only the functions that seal or open content pay for it (the CryptoLayer). A sealed
value is `format (1 byte) | nonce (12) | ciphertext+tag`; the format byte says which algorithm sealed it.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from session_service.domain.errors import ContentUnreadable

AES_GCM = 1
NONCE_BYTES = 12


class AesGcm:
    """One AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return bytes([AES_GCM]) + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[0] != AES_GCM:
            raise ContentUnreadable("not a sealed value of this service")
        try:
            return self._aead.decrypt(sealed[1 : 1 + NONCE_BYTES], sealed[1 + NONCE_BYTES :], aad)
        except InvalidTag as error:
            raise ContentUnreadable("the value does not authenticate under this session's key") from error
