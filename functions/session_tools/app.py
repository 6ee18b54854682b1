"""GET /v1/sessions/{session_id}/tools?query=&limit=: the session's tools, ranked by relevance to the query
(BM25), or all of them by name without one."""

from session_service.domain.requests import SearchToolsParams
from session_service.edges.api import build_app, caller_project, entrypoint, parse_query
from session_service.runtime import tool_router

app = build_app()


@app.get("/v1/sessions/<session_id>/tools")
def session_tools(session_id: str) -> dict:
    params = parse_query(app, SearchToolsParams)
    found, next_cursor = tool_router().search(caller_project(app), session_id, params)
    return {"items": [tool.to_agent(score) for tool, score in found], "next_cursor": next_cursor}


handler = entrypoint(app)
