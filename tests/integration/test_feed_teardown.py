"""The feed's race with DELETE, closed by teardown: `$connect` checks that a token's session is live, then
writes the connection; if the tombstone lands between the two and the write after the notifier closed the
session's connections on session.deleted, that connection would outlive its session. Teardown closes
(through the WebSocket management API) and removes the session's token connections stamped at or after the
delete; the older ones are the notifier's, which first sends them session.deleted. Real parts: the
template's WebSocket API as the dev stack serves it (plugins.services.websocket_gateway), its $connect
function, the teardown pipeline."""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline
from session_service import clock
from session_service.models import FeedConnection
from session_service.runtime import container_for
from session_service.settings import Settings


def connection_store(invoker: Any) -> Any:
    return container_for(Settings.from_env(invoker.env_for("TeardownFunction"))).connection_store


def test_teardown_closes_and_removes_token_connections_written_after_the_delete(
    api: Api, project: Project, teardown: TeardownPipeline, websocket_gateway: Any, invoker: Any
) -> None:
    session = api.create(project)
    sid = session["id"]
    token = api.call("POST", f"/v1/sessions/{sid}/tokens", key=project.api_key).body["token"]
    connections = connection_store(invoker)

    def token_connections() -> dict[str, FeedConnection]:
        return {c.connection_id: c for c in connections.of_session(project.project_id, sid)}

    with ExitStack() as sockets:
        early = sockets.enter_context(connect(f"{websocket_gateway.url}?token={token}", open_timeout=10))
        [early_id] = token_connections()  # written by $connect
        racing = sockets.enter_context(connect(f"{websocket_gateway.url}?token={token}", open_timeout=10))
        [racing_id] = set(token_connections()) - {early_id}
        dashboard = sockets.enter_context(
            connect(websocket_gateway.url, additional_headers={"x-api-key": project.api_key})
        )
        assert api.call("DELETE", f"/v1/sessions/{sid}", key=project.api_key).status == 200
        # What the race leaves: a `$connect` that found the session live a moment before the tombstone
        # writes its row, stamped after it, once the notifier (not run here) has closed the others. Here the
        # racing socket's row, and one whose client is already gone (the management API answers 410).
        after_delete = clock.utc_now_iso()
        connections.put(replace(token_connections()[racing_id], connected_at=after_delete))
        ghost = FeedConnection("gone-client", project.project_id, sid, after_delete, int(time.time()) + 600)
        connections.put(ghost)
        assert set(token_connections()) == {early_id, racing_id, ghost.connection_id}

        teardown.drain()

        with pytest.raises(ConnectionClosed) as closed:
            racing.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000  # closed by the server
        # The early connection is the notifier's: it hears session.deleted first, then is closed.
        assert set(token_connections()) == {early_id}
        assert early.protocol.state.name == "OPEN"
        # The project's own connection is not the session's at all.
        assert dashboard.protocol.state.name == "OPEN"
        assert any(c.session_id is None for c in connections.of_project(project.project_id))
    state = api.call("GET", "/v1/sessions", key=project.api_key, query={"include_deleted": "true"}).body
    assert next(item for item in state["items"] if item["id"] == sid)["teardown"]["state"] == "done"
