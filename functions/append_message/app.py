"""POST /v1/sessions/{session_id}/messages: append to the session's conversation (201), or, for a local_id
seen before, return the original message (200): never a second message, never a burned seq. An
Idempotency-Key also works (a retry replays the first answer)."""

from aws_lambda_powertools.event_handler import Response

from session_service.domain.requests import MAX_MESSAGE_BODY_BYTES, AppendMessageRequest
from session_service.edges.api import build_app, caller_project, entrypoint, parse_body
from session_service.edges.idempotency import idempotent
from session_service.runtime import messages

app = build_app()


@app.post("/v1/sessions/<session_id>/messages")
def append_message(session_id: str) -> Response | tuple[dict, int]:
    request = parse_body(app, AppendMessageRequest, max_bytes=MAX_MESSAGE_BODY_BYTES)
    project_id = caller_project(app)

    def append() -> tuple[dict, int]:
        message, created = messages().append(project_id, session_id, request)
        return message.to_api(), 201 if created else 200

    return idempotent(app, request, append)


handler = entrypoint(app)
