"""GET /v1/sessions: the caller's live sessions, newest first, cursor-paginated (a Query, never a Scan)."""

from session_service.domain.requests import ListSessionsParams
from session_service.edges.api import build_app, caller_project, entrypoint, parse_query
from session_service.runtime import session_service

app = build_app()


@app.get("/v1/sessions")
def list_sessions() -> dict:
    page = session_service().list(caller_project(app), parse_query(app, ListSessionsParams))
    return {"items": [session.to_api() for session in page.items], "next_cursor": page.next_cursor}


handler = entrypoint(app)
