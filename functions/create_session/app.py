"""POST /v1/sessions: create a session (201), or return the project's live session with that tag (200).
With an Idempotency-Key, a retry replays the first answer (session_service.edges.idempotency)."""

from aws_lambda_powertools.event_handler import Response

from session_service.domain.requests import CreateSessionRequest
from session_service.edges.api import build_app, caller_project, entrypoint, parse_body
from session_service.edges.idempotency import idempotent
from session_service.runtime import session_service

app = build_app()


@app.post("/v1/sessions")
def create_session() -> Response | tuple[dict, int]:
    request, project_id = parse_body(app, CreateSessionRequest), caller_project(app)

    def create() -> tuple[dict, int]:
        session, created = session_service().create(project_id, request)
        return session.to_api(), 201 if created else 200

    return idempotent(app, request, create)


handler = entrypoint(app)
