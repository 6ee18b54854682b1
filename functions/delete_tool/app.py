"""DELETE /v1/tools/{tool_name}: remove a catalog tool (sessions stop seeing it at once)."""

from session_service.edges.api import build_app, caller_project, entrypoint
from session_service.runtime import tool_catalog

app = build_app()


@app.delete("/v1/tools/<tool_name>")
def delete_tool(tool_name: str) -> dict:
    tool_catalog().delete(caller_project(app), tool_name)
    return {"name": tool_name, "deleted": True}


handler = entrypoint(app)
