"""POST /v1/sessions/{session_id}/tools/{tool_name}/call: run one of the session's tools. A tool's own
failure is a 200 with is_error; invalid arguments are a 422 and nothing runs. Compute-limited; with an
Idempotency-Key a retry replays the first result instead of calling the tool again."""

from aws_lambda_powertools.event_handler import Response

from session_service.domain.requests import CallToolRequest
from session_service.edges.api import COMPUTE, build_app, caller_project, entrypoint, parse_body
from session_service.edges.idempotency import idempotent
from session_service.runtime import tool_router

app = build_app(rate_limit=COMPUTE)


@app.post("/v1/sessions/<session_id>/tools/<tool_name>/call")
def call_tool(session_id: str, tool_name: str) -> Response | tuple[dict, int]:
    request, project_id = parse_body(app, CallToolRequest, optional=True), caller_project(app)

    def call() -> tuple[dict, int]:
        return tool_router().call(project_id, session_id, tool_name, request.arguments).to_api(), 200

    return idempotent(app, request, call)


handler = entrypoint(app)
