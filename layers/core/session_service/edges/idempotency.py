"""Idempotency keys on the routes that create things or spend compute (create session, execute, tool calls,
message appends): the HTTP edge of it, as session_service.edges.api is for everything else.

A request with `Idempotency-Key: <1..255 characters>` runs at most once per project and route within
IDEMPOTENCY_TTL_SECONDS (24 h): a retry with the same key and the same request (path and body) gets the first
response's status and body again, with `Idempotent-Replayed: true`, and nothing runs. The same key with a
different request is 422 idempotency_key_reused; while the first is still running, 409
idempotency_in_progress. A request that failed (any error response) is not remembered, so its retry runs.
Without the header nothing changes, and the idempotency utility is never imported (cold start).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from pydantic import BaseModel

from session_service.domain.errors import NotFound, ValidationFailed
from session_service.domain.ports import ContentCipher, SessionStore, Work
from session_service.edges.api import caller_project
from session_service.services import liveness
from session_service.services.content_keys import KeyDestroyed

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


class SessionSealing:
    """A stored first response is content too (a session's metadata, a message, a command's output): it is
    sealed under its session's key, so teardown's key deletion makes the record unreadable with the rest
    (docs/architecture.md, "Erasure"). A replay once the session is deleted is 404, as every path of a
    deleted session is, whether or not its key is gone yet."""

    def __init__(self, cipher: ContentCipher, sessions: SessionStore, project_id: str) -> None:
        self._cipher = cipher
        self._sessions = sessions
        self._project_id = project_id

    def seal(self, session_id: str, payload: dict[str, Any]) -> bytes:
        return self._cipher.seal(self._project_id, session_id, "idempotent-response", payload)

    def require_live(self, session_id: str) -> None:
        liveness.require_live(self._sessions, self._project_id, session_id)

    def open(self, session_id: str, sealed: bytes) -> dict[str, Any]:
        self.require_live(session_id)
        try:
            opened: dict[str, Any] = self._cipher.open(
                self._project_id, session_id, "idempotent-response", sealed
            )
        except KeyDestroyed as error:
            raise NotFound(liveness.NOT_FOUND) from error
        return opened


def idempotent(app: APIGatewayHttpResolver, request: BaseModel, work: Work) -> Response | tuple[dict, int]:
    """`work()` (the route's service call, returning body and status), once per Idempotency-Key."""
    event = app.current_event
    key = (event.headers or {}).get(HEADER)
    if key is None:
        return work()
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise ValidationFailed(
            f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} characters",
            details=[
                {
                    "loc": ["header", "Idempotency-Key"],
                    "msg": f"must be 1..{MAX_KEY_LENGTH} characters",
                    "type": "string_length",
                }
            ],
        )
    from session_service.runtime import container, idempotency

    project_id = caller_project(app)
    path = dict(event.path_parameters or {})
    outcome = idempotency().run(
        route=event.route_key,
        project_id=project_id,
        key=key,
        request={"path": path, "body": request.model_dump(mode="json")},
        work=work,
        lambda_context=app.lambda_context,
        sealing=SessionSealing(container().cipher, container().store, project_id),
        session_id=path.get("session_id"),
    )
    return Response(
        status_code=outcome.status,
        content_type="application/json",
        body=json.dumps(outcome.body, separators=(",", ":")),
        headers={REPLAYED_HEADER: "true"} if outcome.replayed else {},
    )
