"""POST /v1/sessions/{session_id}/tools/{tool_name}/call: run one of the session's tools. A tool's own
failure is a 200 with is_error; invalid arguments are a 422 and nothing runs."""

from session_service.api import build_app, caller_project, entrypoint, parse_body
from session_service.models import CallToolRequest
from session_service.runtime import tool_router

app = build_app()


@app.post("/v1/sessions/<session_id>/tools/<tool_name>/call")
def call_tool(session_id: str, tool_name: str) -> dict:
    request = parse_body(app, CallToolRequest, optional=True)
    return tool_router().call(caller_project(app), session_id, tool_name, request.arguments).to_api()


handler = entrypoint(app)
