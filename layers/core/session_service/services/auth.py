"""Project API keys: issued once, stored only as a SHA-256 hash, checked in constant time.

Key format: ``ssk_<key_id>_<secret>`` — the 12-hex-char key id is public (listing, revoking), the secret is
32 random bytes in url-safe base64. A malformed key is rejected without touching the database.
"""

from __future__ import annotations

import hmac
import re
import secrets
from typing import TYPE_CHECKING

from session_service.domain import clock, ids
from session_service.domain.entities import ApiKeyRecord, IssuedKey, Principal, Project
from session_service.domain.errors import NotFound, Unauthorized, ValidationFailed
from session_service.domain.ports import KeyStore, ProjectStore

if TYPE_CHECKING:
    from session_service.services.tokens import TokenService

# The authorizer's context: the caller's project, and for a session token the only session it may reach.
PROJECT_CONTEXT_KEY = "project_id"
TOKEN_SESSION_CONTEXT_KEY = "token_session_id"  # noqa: S105 - a context key, not a secret
# ...and what the routes' rate limiter needs: the credential (its buckets) and the project's limits.
CREDENTIAL_CONTEXT_KEY = "credential"
RATE_LIMIT_CONTEXT_KEY = "rate_limit_per_minute"
COMPUTE_RATE_LIMIT_CONTEXT_KEY = "compute_rate_limit_per_minute"
# Set (to "true") when the credentials could not be checked because the key or token store did not answer.
UNAVAILABLE_CONTEXT_KEY = "auth_unavailable"

KEY_FORMAT = re.compile(r"^ssk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def generate_key() -> tuple[str, str]:
    """(key_id, api_key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"ssk_{key_id}_{secrets.token_urlsafe(32)}"


MAX_RATE_LIMIT_PER_MINUTE = 1_000_000
BEARER = re.compile(r"^Bearer\s+(\S+)$", re.IGNORECASE)


class Authenticator:
    """API keys (a project) and session tokens (one session of a project)."""

    def __init__(self, keys: KeyStore, tokens: TokenService | None = None) -> None:
        self._keys = keys
        self._tokens = tokens

    def principal_for(self, api_key: str | None, authorization: str | None) -> Principal:
        """An `x-api-key` wins when both are sent; `Authorization: Bearer sst_...` is a session token."""
        if api_key:
            record = self.key_record(api_key)
            return Principal(project_id=record.project_id, credential=f"key:{record.key_id}")
        bearer = BEARER.match(authorization or "")
        if bearer and self._tokens is not None:
            return self._tokens.principal_for(bearer.group(1))
        raise Unauthorized("missing API key or session token")

    def project_for(self, api_key: str | None) -> str:
        """The project a key belongs to; Unauthorized for a missing, malformed, unknown or revoked key."""
        return self.key_record(api_key).project_id

    def key_record(self, api_key: str | None) -> ApiKeyRecord:
        if not api_key or not KEY_FORMAT.match(api_key):
            raise Unauthorized("missing or malformed API key")
        presented = ids.hash_key(api_key)
        record = self._keys.get_by_hash(presented)
        # The lookup is by hash; comparing again in constant time keeps a lookup quirk from ever authorising.
        if record is None or not hmac.compare_digest(record.key_hash, presented):
            raise Unauthorized("unknown API key")
        if record.is_revoked:
            raise Unauthorized("revoked API key")
        return record


class Admin:
    """What the admin command line does: projects and their keys."""

    def __init__(self, projects: ProjectStore, keys: KeyStore) -> None:
        self._projects = projects
        self._keys = keys

    def create_project(self, name: str) -> Project:
        if not name or len(name) > 128:
            raise ValidationFailed("project name must be 1..128 characters")
        project = Project(project_id=ids.new_project_id(), name=name, created_at=clock.utc_now_iso())
        self._projects.create(project)
        return project

    def issue_key(self, project_id: str) -> IssuedKey:
        if self._projects.get(project_id) is None:
            raise NotFound(f"no project {project_id}")
        key_id, api_key = generate_key()
        self._keys.put(
            ApiKeyRecord(
                key_hash=ids.hash_key(api_key),
                key_id=key_id,
                project_id=project_id,
                created_at=clock.utc_now_iso(),
            )
        )
        return IssuedKey(key_id=key_id, project_id=project_id, api_key=api_key)

    def list_keys(self, project_id: str) -> list[ApiKeyRecord]:
        return self._keys.list_for_project(project_id)

    def set_limits(self, project_id: str, per_minute: int | None, compute_per_minute: int | None) -> Project:
        """The project's own rate limits in requests a minute; None restores the stack's default."""
        for value in (per_minute, compute_per_minute):
            if value is not None and not 1 <= value <= MAX_RATE_LIMIT_PER_MINUTE:
                raise ValidationFailed(f"a rate limit is 1..{MAX_RATE_LIMIT_PER_MINUTE} requests a minute")
        if not self._projects.set_limits(project_id, per_minute, compute_per_minute):
            raise NotFound(f"no project {project_id}")
        project = self._projects.get(project_id)
        assert project is not None
        return project

    def revoke_key(self, project_id: str, key_id: str) -> None:
        if not self._keys.revoke(project_id, key_id, clock.utc_now_iso()):
            raise NotFound(f"no key {key_id} in project {project_id}")
