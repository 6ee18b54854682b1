"""/v1/sessions/{session_id}/mcp: the session's MCP endpoint (streamable HTTP, stateless, JSON responses).
POST carries one JSON-RPC message; GET and DELETE are 405. See session_service.edges.mcp."""

import json

from aws_lambda_powertools.event_handler import Response

from session_service.domain.requests import MAX_BODY_BYTES
from session_service.edges.api import build_app, caller_limits, caller_project, entrypoint
from session_service.edges.mcp import error_body, mcp_endpoint, session_gone
from session_service.services.tokens import UNKNOWN_TOKEN


def jsonrpc_refusal(status: int, code: str, message: str) -> Response:
    """Refusals before the endpoint runs (no key, a token for another session) in JSON-RPC's shape. A
    well-formed token nobody knows is most often one its session's teardown purged: that is the session's
    end, which an MCP client must see as 404 (an expired or malformed token stays 401)."""
    if status == 401 and message == UNKNOWN_TOKEN:
        return Response(404, "application/json", json.dumps(session_gone().body))
    return Response(status, "application/json", json.dumps(error_body(None, -32001, f"{code}: {message}")))


# The endpoint applies the rate limit itself: only it knows which messages are tools/call (compute).
app = build_app(reject=jsonrpc_refusal, rate_limit=None)
METHODS = ["POST", "GET", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]


@app.route("/v1/sessions/<session_id>/mcp", method=METHODS)
def mcp(session_id: str) -> Response:
    event = app.current_event
    try:
        body = event.decoded_body if event.body else None
    except (UnicodeDecodeError, ValueError):
        refused = error_body(None, -32700, "the body is not UTF-8 text")
        return Response(400, "application/json", json.dumps(refused))
    if body is not None and len(body.encode()) > MAX_BODY_BYTES:
        refused = error_body(None, -32600, f"a message is at most {MAX_BODY_BYTES} bytes")
        return Response(413, "application/json", json.dumps(refused))
    headers = {name.lower(): value for name, value in (event.headers or {}).items()}
    reply = mcp_endpoint().handle(
        caller_project(app), session_id, event.http_method, headers, body, caller_limits(app)
    )
    payload = json.dumps(reply.body, separators=(",", ":")) if reply.body is not None else ""
    return Response(reply.status, "application/json" if payload else None, payload, headers=reply.headers)


handler = entrypoint(app)
