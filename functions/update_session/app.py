"""PATCH /v1/sessions/{session_id}: replace config and/or metadata, optionally guarded by expected_version."""

from session_service.domain.requests import UpdateSessionRequest
from session_service.edges.api import build_app, caller_project, entrypoint, parse_body
from session_service.runtime import session_service

app = build_app()


@app.patch("/v1/sessions/<session_id>")
def update_session(session_id: str) -> dict:
    request = parse_body(app, UpdateSessionRequest)
    return session_service().update(caller_project(app), session_id, request).to_api()


handler = entrypoint(app)
