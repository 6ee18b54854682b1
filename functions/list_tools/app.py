"""GET /v1/tools: the caller's project's catalog tools by name, cursor-paginated."""

from session_service.domain.requests import ListToolsParams
from session_service.edges.api import build_app, caller_project, entrypoint, parse_query
from session_service.runtime import tool_catalog

app = build_app()


@app.get("/v1/tools")
def list_tools() -> dict:
    params = parse_query(app, ListToolsParams)
    tools, next_cursor = tool_catalog().page(caller_project(app), params.limit, params.cursor)
    return {"items": [tool.to_api() for tool in tools], "next_cursor": next_cursor}


handler = entrypoint(app)
