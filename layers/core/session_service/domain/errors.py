"""Domain errors. The service layer and adapters raise these; `api.py` alone maps them to HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class BadRequest(DomainError):
    code = "bad_request"


class ValidationFailed(DomainError):
    code = "validation_error"


class PayloadTooLarge(DomainError):
    code = "payload_too_large"


class Unauthorized(DomainError):
    code = "unauthorized"


class NotFound(DomainError):
    code = "not_found"


class VersionConflict(DomainError):
    code = "version_conflict"


class Conflict(DomainError):
    """A write lost a race it cannot retry (e.g. a tag claim that kept changing)."""

    code = "conflict"


class RateLimited(DomainError):
    """The caller's token bucket is empty (session_service.services.limits); `headers` say when to
    come back."""

    code = "rate_limited"

    def __init__(self, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.headers = headers


class IdempotencyKeyReused(DomainError):
    """An Idempotency-Key seen before with a different request (body or path)."""

    code = "idempotency_key_reused"


class IdempotencyInProgress(DomainError):
    """An Idempotency-Key whose first request is still running."""

    code = "idempotency_in_progress"


class DependencyUnavailable(DomainError):
    """A backing service the request cannot do without (DynamoDB) did not answer."""

    code = "service_unavailable"


class SandboxUnavailable(DomainError):
    """E2B did not answer or refused (other than 'not found')."""

    code = "sandbox_unavailable"


class SandboxGone(Exception):
    """Adapter outcome: the sandbox no longer exists at E2B (killed, or past its retention)."""


class SandboxRateLimited(SandboxUnavailable):
    """E2B answered 429 after the SDK's own retries."""


class TeardownIncomplete(Exception):
    """Some of a deleted session's resources are still there; the message must be retried."""


class TagTaken(Exception):
    """Adapter outcome: the tag claim changed under us; the service re-reads and decides again."""


class WriteConflict(Exception):
    """Adapter outcome: a conditional write lost (version moved on, or the session is gone)."""


class CacheUnavailable(Exception):
    """Adapter outcome: Redis did not take a write that must land (the stream invalidator retries it)."""


class FeedUnavailable(Exception):
    """Adapter outcome: the WebSocket management API or the event bus did not take a delivery that must be
    retried (throttled, unreachable); the stream record fails and comes back."""


class KeyDestroyed(Exception):
    """The session's key is gone (teardown destroyed it, or the session never existed): its content is
    unreadable, here and in every backup."""


class ContentUnreadable(Exception):
    """A sealed value that does not authenticate under this session's key and context (tampered, copied
    from another session or field, or in a format this process does not accept)."""
