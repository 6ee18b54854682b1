"""POST /v1/sessions/{session_id}/tokens: mint a session token (shown once) for that session's routes."""

from session_service.domain.requests import CreateTokenRequest
from session_service.edges.api import build_app, caller_project, entrypoint, parse_body
from session_service.runtime import tokens

app = build_app()


@app.post("/v1/sessions/<session_id>/tokens")
def create_token(session_id: str) -> tuple[dict, int]:
    request = parse_body(app, CreateTokenRequest, optional=True)
    return tokens().mint(caller_project(app), session_id, request).to_api(), 201


handler = entrypoint(app)
