"""GET /v1/sessions/{session_id}/messages?after_seq=N (ascending) or ?before_seq=N (newest first)."""

from session_service.domain.requests import ListMessagesParams
from session_service.edges.api import build_app, caller_project, entrypoint, parse_query
from session_service.runtime import messages

app = build_app()


@app.get("/v1/sessions/<session_id>/messages")
def list_messages(session_id: str) -> dict:
    page, has_more = messages().page(caller_project(app), session_id, parse_query(app, ListMessagesParams))
    return {"items": [message.to_api() for message in page], "has_more": has_more}


handler = entrypoint(app)
