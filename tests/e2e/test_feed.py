"""The live feed and the event bus against the running dev stack, with a real WebSocket client
(`websockets`): what a project-key client and a session-token client hear, the delete's events, the
cleanup of a gone connection, catch-up after a reconnect, and the bus events (read from the dev stack's
tap queue, which a rule on the bus fills)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from test_http_contract import call
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

pytestmark = pytest.mark.e2e


class Listener:
    """A feed client that collects frames on a thread."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.frames: list[dict[str, Any]] = []
        self.closed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.connection:
                self.frames.append(json.loads(message))
        except Exception:  # the connection ended; `closed` says so
            pass
        finally:
            self.closed.set()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((frame for frame in self.frames if predicate(frame)), None)
            if found is not None:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no such frame within {timeout}s; got {[f['type'] for f in self.frames]}")


@contextmanager
def feed(stack: dict, *, key: str | None = None, token: str | None = None) -> Iterator[Listener]:
    url = stack["ws_url"] + (f"?token={token}" if token else "")
    with connect(url, additional_headers={"x-api-key": key} if key else {}, open_timeout=10) as connection:
        yield Listener(connection)


def of(session_id: str, kind: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame["session_id"] == session_id and frame["type"] == kind


def test_a_project_client_hears_its_sessions_messages_and_the_delete(devstack: dict) -> None:
    key = devstack["projects"][0]["api_key"]
    with feed(devstack, key=key) as listener:
        status, session = call(devstack, "POST", "/v1/sessions", key, {"user_id": "feed"})
        assert status == 201
        sid = session["id"]
        created = listener.wait_for(of(sid, "session.created"))
        assert set(created) == {"id", "type", "session_id", "at", "data"}
        appended = call(devstack, "POST", f"/v1/sessions/{sid}/messages", key, {"content": {"text": "hi"}})[1]
        frame = listener.wait_for(of(sid, "message.created"))
        assert frame["seq"] == appended["seq"] == 1 and frame["data"]["id"] == appended["id"]
        assert "content" not in frame["data"]  # ids, not contents
        call(devstack, "PATCH", f"/v1/sessions/{sid}", key, {"metadata": {"a": 1}})
        assert listener.wait_for(of(sid, "session.updated"))["data"] == {"version": 2}
        assert call(devstack, "DELETE", f"/v1/sessions/{sid}", key)[0] == 200
        listener.wait_for(of(sid, "session.deleted"))
        done = listener.wait_for(of(sid, "session.teardown_completed"))
        assert done["data"]["messages_purged"] == 1
        assert len({frame["id"] for frame in listener.frames}) == len(listener.frames)  # ids are unique


def test_a_token_client_hears_only_its_session_and_is_closed_by_its_delete(devstack: dict) -> None:
    key = devstack["projects"][0]["api_key"]
    mine = call(devstack, "POST", "/v1/sessions", key, {"user_id": "feed"})[1]
    other = call(devstack, "POST", "/v1/sessions", key, {"user_id": "feed"})[1]
    token = call(devstack, "POST", f"/v1/sessions/{mine['id']}/tokens", key, {"ttl_s": 600})[1]["token"]
    with feed(devstack, token=token) as listener:
        call(devstack, "POST", f"/v1/sessions/{other['id']}/messages", key, {"content": "not for you"})
        call(devstack, "POST", f"/v1/sessions/{mine['id']}/messages", key, {"content": "for you"})
        listener.wait_for(of(mine["id"], "message.created"))
        time.sleep(1)  # the other session's event, had it been sent, would be here by now
        assert {frame["session_id"] for frame in listener.frames} == {mine["id"]}
        assert call(devstack, "DELETE", f"/v1/sessions/{mine['id']}", key)[0] == 200
        listener.wait_for(of(mine["id"], "session.deleted"))
        assert listener.closed.wait(10)  # its credential died with the session


def test_connecting_needs_a_valid_key_or_a_live_sessions_token(devstack: dict) -> None:
    key = devstack["projects"][0]["api_key"]
    for kwargs in ({}, {"key": "ssk_0123456789ab_" + "A" * 43}, {"token": "sst_nope"}):
        with pytest.raises(InvalidStatus) as refused, feed(devstack, **kwargs):
            pass
        assert refused.value.response.status_code == 401
    session = call(devstack, "POST", "/v1/sessions", key, {"user_id": "feed"})[1]
    token = call(devstack, "POST", f"/v1/sessions/{session['id']}/tokens", key, {"ttl_s": 600})[1]["token"]
    call(devstack, "DELETE", f"/v1/sessions/{session['id']}", key)
    with pytest.raises(InvalidStatus) as refused, feed(devstack, token=token):
        pass
    assert refused.value.response.status_code in (401, 404)  # 404 before teardown purges the token


def test_a_gone_connection_is_removed_and_the_live_one_still_hears(devstack: dict) -> None:
    key = devstack["projects"][0]["api_key"]
    project_id = devstack["projects"][0]["project_id"]
    dynamodb = boto3.client(
        "dynamodb",
        endpoint_url=devstack["aws_endpoint_url"],
        region_name=devstack["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    table = devstack["tables"]["ConnectionsTable"]
    stale = "gone-connection-id="  # a row whose client vanished without a $disconnect
    item = {
        "connection_id": {"S": stale},
        "project_id": {"S": project_id},
        "project_scope": {"S": project_id},
        "connected_at": {"S": "2026-01-01T00:00:00.000000Z"},
        "expires_at": {"N": str(int(time.time()) + 3600)},
    }
    dynamodb.put_item(TableName=table, Item=item)
    with feed(devstack, key=key) as listener:
        session = call(devstack, "POST", "/v1/sessions", key, {"user_id": "feed"})[1]
        listener.wait_for(of(session["id"], "session.created"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "Item" in dynamodb.get_item(
            TableName=table, Key={"connection_id": {"S": stale}}
        ):
            time.sleep(0.1)
        assert "Item" not in dynamodb.get_item(TableName=table, Key={"connection_id": {"S": stale}})
        call(devstack, "POST", f"/v1/sessions/{session['id']}/messages", key, {"content": "still here"})
        listener.wait_for(of(session["id"], "message.created"))  # the sender's connection was kept


def test_a_client_that_reconnects_catches_up_with_changed_since_and_after_seq(devstack: dict) -> None:
    """The documented resync: a feed has no replay, so after any reconnect a client asks what changed."""
    key = devstack["projects"][0]["api_key"]
    kept = call(devstack, "POST", "/v1/sessions", key, {"user_id": "sync"})[1]
    doomed = call(devstack, "POST", "/v1/sessions", key, {"user_id": "sync"})[1]
    call(devstack, "POST", f"/v1/sessions/{kept['id']}/messages", key, {"content": "seen"})
    last_seen_at, last_seq = kept["created_at"], 1
    # Offline: a message arrives and a session is deleted.
    call(devstack, "POST", f"/v1/sessions/{kept['id']}/messages", key, {"content": "missed"})
    call(devstack, "DELETE", f"/v1/sessions/{doomed['id']}", key)
    with feed(devstack, key=key):
        changed = call(devstack, "GET", f"/v1/sessions?changed_since={last_seen_at}&user_id=sync", key)[1][
            "items"
        ]
        deleted = [item for item in changed if item.get("deleted")]
        assert [item["id"] for item in deleted] == [doomed["id"]]  # tombstones are in a sync listing
        missed = call(devstack, "GET", f"/v1/sessions/{kept['id']}/messages?after_seq={last_seq}", key)[1]
        assert [m["content"] for m in missed["items"]] == ["missed"]


BUS_DUPLICATE_WINDOW_S = 5.0  # how long the bus test keeps reading once every event it waits for arrived


def read_bus(sqs: Any, queue_url: str, seen: dict[tuple[str, str], int]) -> None:
    """One receive from the bus's tap queue: counts each (session_id, detail-type), deletes what it read."""
    for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
        "Messages", []
    ):
        event = json.loads(message["Body"])
        assert event["source"] == "com.sessionservice.sessions"
        detail = event["detail"]
        assert {"event_id", "project_id", "session_id", "occurred_at", "schema_version"} <= set(detail)
        kind = (detail["session_id"], event["detail-type"])
        seen[kind] = seen.get(kind, 0) + 1
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def test_the_bus_gets_each_sessions_delete_and_teardown_once(devstack: dict) -> None:
    key = devstack["projects"][0]["api_key"]
    sessions = [call(devstack, "POST", "/v1/sessions", key, {"user_id": "bus"})[1]["id"] for _ in range(3)]
    for sid in sessions:
        assert call(devstack, "DELETE", f"/v1/sessions/{sid}", key)[0] == 200
    sqs = boto3.client(
        "sqs",
        endpoint_url=devstack["aws_endpoint_url"],
        region_name=devstack["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    seen: dict[tuple[str, str], int] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len([k for k in seen if k[0] in sessions]) < 2 * len(sessions):
        read_bus(sqs, devstack["events_tap_queue_url"], seen)
    # Both kinds arrived for every session; a duplicate would come after them: keep reading a while.
    quiet_until = time.monotonic() + BUS_DUPLICATE_WINDOW_S
    while time.monotonic() < quiet_until:
        read_bus(sqs, devstack["events_tap_queue_url"], seen)
    for sid in sessions:
        assert seen.get((sid, "session.deleted")) == 1
        assert seen.get((sid, "session.teardown_completed")) == 1
