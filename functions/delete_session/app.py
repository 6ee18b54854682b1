"""DELETE /v1/sessions/{session_id}: tombstone the session (one conditional write), then teardown via SQS."""

from session_service.edges.api import build_app, caller_project, entrypoint
from session_service.runtime import session_service

app = build_app()


@app.delete("/v1/sessions/<session_id>")
def delete_session(session_id: str) -> dict:
    return session_service().delete(caller_project(app), session_id).to_api()


handler = entrypoint(app)
