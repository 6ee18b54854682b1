"""GET /v1/tools/{tool_name}: one catalog tool of the caller's project."""

from session_service.edges.api import build_app, caller_project, entrypoint
from session_service.runtime import tool_catalog

app = build_app()


@app.get("/v1/tools/<tool_name>")
def get_tool(tool_name: str) -> dict:
    return tool_catalog().get(caller_project(app), tool_name).to_api()


handler = entrypoint(app)
