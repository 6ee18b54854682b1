"""Idempotency keys on the routes that create things or spend compute (create session, execute, tool calls,
message appends): the HTTP edge of it, as session_service.api is for everything else.

A request with `Idempotency-Key: <1..255 characters>` runs at most once per project and route within
IDEMPOTENCY_TTL_SECONDS (24 h): a retry with the same key and the same request (path and body) gets the first
response's status and body again, with `Idempotent-Replayed: true`, and nothing runs. The same key with a
different request is 422 idempotency_key_reused; while the first is still running, 409
idempotency_in_progress. A request that failed (any error response) is not remembered, so its retry runs.
Without the header nothing changes, and the idempotency utility is never imported (cold start).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from pydantic import BaseModel

from session_service.api import caller_project
from session_service.errors import ValidationFailed

HEADER = "idempotency-key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255

Work = Callable[[], tuple[dict[str, Any], int]]


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
    from session_service.runtime import idempotency

    outcome = idempotency().run(
        route=event.route_key,
        project_id=caller_project(app),
        key=key,
        request={"path": dict(event.path_parameters or {}), "body": request.model_dump(mode="json")},
        work=work,
        lambda_context=app.lambda_context,
    )
    return Response(
        status_code=outcome.status,
        content_type="application/json",
        body=json.dumps(outcome.body, separators=(",", ":")),
        headers={REPLAYED_HEADER: "true"} if outcome.replayed else {},
    )
