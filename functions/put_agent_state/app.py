"""PUT /v1/sessions/{session_id}/agent-state: the agent's state, guarded by its own expected_version."""

from session_service.domain.requests import MAX_AGENT_STATE_BODY_BYTES, PutAgentStateRequest
from session_service.edges.api import build_app, caller_project, entrypoint, parse_body
from session_service.runtime import session_service

app = build_app()


@app.put("/v1/sessions/<session_id>/agent-state")
def put_agent_state(session_id: str) -> dict:
    request = parse_body(app, PutAgentStateRequest, max_bytes=MAX_AGENT_STATE_BODY_BYTES)
    version = session_service().put_agent_state(caller_project(app), session_id, request)
    return {"agent_state_version": version}


handler = entrypoint(app)
