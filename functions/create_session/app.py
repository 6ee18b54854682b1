"""POST /v1/sessions: create a session (201), or return the project's live session with that tag (200)."""

from session_service.api import build_app, caller_project, entrypoint, parse_body
from session_service.models import CreateSessionRequest
from session_service.runtime import session_service

app = build_app()


@app.post("/v1/sessions")
def create_session() -> tuple[dict, int]:
    session, created = session_service().create(caller_project(app), parse_body(app, CreateSessionRequest))
    return session.to_api(), 201 if created else 200


handler = entrypoint(app)
