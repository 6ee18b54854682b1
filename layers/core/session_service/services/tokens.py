"""Session tokens: a bearer credential for one session's routes, for agents that must not hold the
project's API key (an MCP client config, a browser tab).

Format ``sst_<token_id>_<secret>``: the 12-hex-char token id is public (logs, audit), the secret is 32
random bytes in url-safe base64. Only the SHA-256 of the whole token is stored, with the session it may
reach and when it expires (also the table's TTL). A token is only ever issued for a live session: the
store writes it in one transaction with a check that the session is not deleted. After a DELETE every
session route answers 404 whatever token is presented (the routes check the session), and teardown purges
the session's tokens.
"""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Callable
from datetime import timedelta

from session_service.domain import clock
from session_service.domain.entities import IssuedToken, Principal, TokenRecord
from session_service.domain.errors import Unauthorized
from session_service.domain.ids import hash_key
from session_service.domain.ports import TokenStore
from session_service.domain.requests import CreateTokenRequest
from session_service.services import liveness

TOKEN_FORMAT = re.compile(r"^sst_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
UNKNOWN_TOKEN = "unknown session token"  # noqa: S105 - a message; also what a torn-down session's token gets


def generate_token() -> tuple[str, str]:
    """(token_id, token)."""
    token_id = secrets.token_hex(6)
    return token_id, f"sst_{token_id}_{secrets.token_urlsafe(32)}"


class TokenService:
    def __init__(self, store: TokenStore, *, now: Callable[[], float] | None = None) -> None:
        self._store = store
        self._now = now or (lambda: clock.now().timestamp())

    def mint(self, project_id: str, session_id: str, request: CreateTokenRequest) -> IssuedToken:
        liveness.require_id(session_id)
        token_id, token = generate_token()
        created = clock.now()
        expires = created + timedelta(seconds=request.ttl_s)
        record = TokenRecord(
            token_hash=hash_key(token),
            token_id=token_id,
            project_id=project_id,
            session_id=session_id,
            created_at=clock.iso(created),
            expires_at=int(expires.timestamp()),
        )
        liveness.require_written(self._store.issue(record), session_id)
        return IssuedToken(token=token, token_id=token_id, expires_at=clock.iso(expires))

    def principal_for(self, token: str) -> Principal:
        """The session a token may reach; Unauthorized for a malformed, unknown or expired token."""
        if not TOKEN_FORMAT.match(token):
            raise Unauthorized("malformed session token")
        presented = hash_key(token)
        record = self._store.get_by_hash(presented)
        if record is None or not hmac.compare_digest(record.token_hash, presented):
            raise Unauthorized(UNKNOWN_TOKEN)
        if record.expires_at <= self._now():
            raise Unauthorized("expired session token")
        return Principal(
            project_id=record.project_id, session_id=record.session_id, credential=f"token:{record.token_id}"
        )
