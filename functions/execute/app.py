"""POST /v1/sessions/{session_id}/execute: run a command in the session's own E2B sandbox (created on first
use, resumed when paused). A non-zero exit code is a normal 200 result."""

from session_service.api import build_app, caller_project, entrypoint, parse_body
from session_service.models import ExecuteRequest
from session_service.runtime import workbench

app = build_app()


@app.post("/v1/sessions/<session_id>/execute")
def execute(session_id: str) -> dict:
    request = parse_body(app, ExecuteRequest)
    return workbench().execute(caller_project(app), session_id, request).to_api()


handler = entrypoint(app)
