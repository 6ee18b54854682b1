"""POST /v1/sessions/{session_id}/execute: run a command in the session's own E2B sandbox (created on first
use, resumed when paused). A non-zero exit code is a normal 200 result. Compute-limited; with an
Idempotency-Key a retry replays the first result instead of running the command again."""

from aws_lambda_powertools.event_handler import Response

from session_service.domain.requests import ExecuteRequest
from session_service.edges.api import COMPUTE, build_app, caller_project, entrypoint, parse_body
from session_service.edges.idempotency import idempotent
from session_service.runtime import workbench

app = build_app(rate_limit=COMPUTE)


@app.post("/v1/sessions/<session_id>/execute")
def execute(session_id: str) -> Response | tuple[dict, int]:
    request, project_id = parse_body(app, ExecuteRequest), caller_project(app)
    return idempotent(
        app, request, lambda: (workbench().execute(project_id, session_id, request).to_api(), 200)
    )


handler = entrypoint(app)
