"""PUT /v1/tools/{tool_name}: create (201) or replace (200) a catalog tool of the caller's project."""

from session_service.domain.requests import PutToolRequest
from session_service.edges.api import build_app, caller_project, entrypoint, parse_body
from session_service.runtime import tool_catalog

app = build_app()


@app.put("/v1/tools/<tool_name>")
def put_tool(tool_name: str) -> tuple[dict, int]:
    request = parse_body(app, PutToolRequest)
    tool, created = tool_catalog().put(caller_project(app), tool_name, request)
    return tool.to_api(), 201 if created else 200


handler = entrypoint(app)
