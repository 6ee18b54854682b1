"""A deleted session's token connections cannot outlive it. `$connect` writes a token's connection in one
transaction with the check that its session is live (as a token itself is issued), so no connection is
ever written after the tombstone; the notifier closes the session's token connections after sending
session.deleted, and once more after session.teardown_completed, for a connection the `by_session` index
did not show yet at the first pass (a global index is eventually consistent). Real parts: the template's
WebSocket API as the dev stack serves it, its $connect function, the notifier through its stream event
source, the teardown pipeline, a real WebSocket client."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from plugins.api import Api, Project
from plugins.streams import StreamPipeline
from plugins.teardown import TeardownPipeline
from session_service.domain import clock
from session_service.domain.entities import FeedConnection
from session_service.runtime import container_for
from session_service.settings import Settings


def token_for(api: Api, project: Project, session_id: str) -> str:
    reply = api.call("POST", f"/v1/sessions/{session_id}/tokens", key=project.api_key)
    assert reply.status == 201, reply.body
    return str(reply.body["token"])


def rows_of(table: Any, session_id: str) -> list[dict[str, Any]]:
    found = table.scan(
        FilterExpression="session_id = :s", ExpressionAttributeValues={":s": {"S": session_id}}
    )
    return list(found["Items"])


@pytest.fixture
def connections_table(local_resources: Any, moto_server: Any) -> Any:
    """The raw table, to play what an index that has not caught up shows (no service code involved)."""
    client = boto3.client(
        "dynamodb",
        endpoint_url=moto_server.url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    name = local_resources.ref("ConnectionsTable")

    class Table:
        def scan(self, **kwargs: Any) -> Any:
            return client.scan(TableName=name, **kwargs)

        def put(self, item: dict[str, Any]) -> None:
            client.put_item(TableName=name, Item=item)

        def delete(self, connection_id: str) -> None:
            client.delete_item(TableName=name, Key={"connection_id": {"S": connection_id}})

    return Table()


def test_no_token_connection_is_written_once_its_session_is_deleted(
    api: Api, project: Project, websocket_gateway: Any, invoker: Any, connections_table: Any
) -> None:
    session = api.create(project)
    sid = session["id"]
    token = token_for(api, project, sid)
    with connect(f"{websocket_gateway.url}?token={token}", open_timeout=10):
        [first] = [row["connection_id"]["S"] for row in rows_of(connections_table, sid)]
    assert api.call("DELETE", f"/v1/sessions/{sid}", key=project.api_key).status == 200

    # A `$connect` past its credential check when the tombstone lands: the write is the check, so nothing.
    store = container_for(Settings.from_env(invoker.env_for("WsConnectFunction"))).connection_store
    late = FeedConnection(
        "late-connect", project.project_id, sid, clock.utc_now_iso(), int(time.time()) + 600
    )
    assert store.put(late) is False
    # And a client connecting now is refused.
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{websocket_gateway.url}?token={token}", open_timeout=10)
    assert refused.value.response.status_code == 404
    # Nothing was written: at most the first connection's row, until its $disconnect removes it.
    assert {row["connection_id"]["S"] for row in rows_of(connections_table, sid)} <= {first}


def test_the_notifier_closes_a_connection_the_index_showed_late_after_teardown(
    api: Api,
    project: Project,
    websocket_gateway: Any,
    invoker: Any,
    local_resources: Any,
    moto_server: Any,
    teardown: TeardownPipeline,
    connections_table: Any,
) -> None:
    notifier = StreamPipeline(
        invoker, local_resources, moto_server.url, "NotifierFunction", table="SessionsTable"
    )
    session = api.create(project)
    sid = session["id"]
    token = token_for(api, project, sid)
    with connect(f"{websocket_gateway.url}?token={token}", open_timeout=10) as client:
        [row] = rows_of(connections_table, sid)
        assert api.call("DELETE", f"/v1/sessions/{sid}", key=project.api_key).status == 200
        # The index does not show the connection yet when session.deleted is handled...
        connections_table.delete(row["connection_id"]["S"])
        notifier.drain()
        connections_table.put(row)  # ...and does once it has caught up (written before the tombstone)
        teardown.drain()
        notifier.drain()  # session.teardown_completed
        frame = json.loads(client.recv(timeout=10))
        assert frame["type"] == "session.teardown_completed" and frame["session_id"] == sid
        with pytest.raises(ConnectionClosed) as closed:
            client.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000  # closed by the server
    assert rows_of(connections_table, sid) == []
