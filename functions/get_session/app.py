"""GET /v1/sessions/{session_id}: one session of the caller's project, read through the cache."""

from session_service.edges.api import build_app, caller_project, entrypoint
from session_service.runtime import session_service

app = build_app()


@app.get("/v1/sessions/<session_id>")
def get_session(session_id: str) -> dict:
    return session_service().get(caller_project(app), session_id)


handler = entrypoint(app)
