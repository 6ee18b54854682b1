"""Per-session content keys (crypto-shredding) through the local API Gateway and the template's functions,
against moto (DynamoDB, SQS, KMS — the key is made from template.yaml's ContentKey), redis-server and the
local E2B API.

What a backup keeps is shown as it would be kept: the raw DynamoDB items, copied before the DELETE and
restored afterwards into new tables (a point-in-time restore makes a new table), then read by a fresh
process of the service's own code — the same decryption path the routes use.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from e2b import Sandbox

from devstack.provision import aws_client, table_request
from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline
from session_service.domain import keys
from session_service.domain.errors import NotFound
from session_service.domain.requests import ListMessagesParams
from session_service.runtime import Container
from session_service.services.content_keys import ContentUnreadable, KeyDestroyed
from session_service.settings import Settings

SECRET_METADATA = {"customer": "Ada Lovelace", "note": "metadata-secret-7c1f"}
SECRET_MESSAGE = {"role": "user", "text": "message-secret-93ab"}


def settings_of(invoker: Any, function: str = "GetSessionFunction", **changes: Any) -> Settings:
    """The settings a function runs with, without the Redis cache (a restored table is read directly)."""
    env = {k: v for k, v in invoker.env_for(function).items() if k != "REDIS_HOST"}
    return Settings.from_env(env).model_copy(update=changes)


def fresh_process(settings: Settings) -> Container:
    """A new Lambda process: no content key in memory."""
    return Container(settings)


class Backup:
    """The raw items of one session, as a table backup (PITR, an export) holds them."""

    def __init__(self, moto: Any, local_resources: Any, project: Project, session_id: str) -> None:
        self.dynamodb = aws_client("dynamodb", moto.url, "us-east-1")
        self.resources = local_resources
        self.project_id, self.session_id = project.project_id, session_id
        self.session_item = self.dynamodb.get_item(
            TableName=self.table("SessionsTable"),
            Key={
                "pk": {"S": keys.session_partition(project.project_id, session_id)},
                "session_id": {"S": session_id},
            },
            ConsistentRead=True,
        )["Item"]
        self.message_items = self.dynamodb.query(
            TableName=self.table("MessagesTable"),
            KeyConditionExpression="session_key = :p",
            ExpressionAttributeValues={":p": {"S": keys.audit_partition(project.project_id, session_id)}},
            ConsistentRead=True,
        )["Items"]

    def table(self, logical_id: str) -> str:
        return str(self.resources.ref(logical_id))

    def raw_bytes(self) -> bytes:
        return repr([self.session_item, *self.message_items]).encode()

    def restore(self, template: Any, suffix: str) -> dict[str, str]:
        """New tables with the source tables' schema, holding the backed-up items. Their names."""
        names = {}
        for logical_id, items in (
            ("SessionsTable", [self.session_item]),
            ("MessagesTable", self.message_items),
        ):
            request = table_request(template, logical_id, self.resources)
            request["TableName"] = name = f"{request['TableName']}-restored-{suffix}"
            request.pop("StreamSpecification", None)
            self.dynamodb.create_table(**request)
            for item in items:
                self.dynamodb.put_item(TableName=name, Item=item)
            names[logical_id] = name
        return names


def make_conversation(api: Api, project: Project, **create: Any) -> dict[str, Any]:
    session = api.create(project, metadata=SECRET_METADATA, **create)
    for n in range(3):
        reply = api.call(
            "POST",
            f"/v1/sessions/{session['id']}/messages",
            key=project.api_key,
            body={"content": {**SECRET_MESSAGE, "n": n}},
        )
        assert reply.status == 201, reply.body
    return session


def read_through(container: Container, project: Project, session_id: str) -> tuple[dict, list[Any]]:
    """What the service's own read path makes of a session and its messages."""
    session = container.sessions.get(project.project_id, session_id)
    messages, _ = container.messages.page(project.project_id, session_id, ListMessagesParams())
    return session, [message.content for message in messages]


def test_content_is_stored_sealed_and_served_plain(
    api: Api, project: Project, moto_server: Any, local_resources: Any
) -> None:
    session = make_conversation(api, project, data_encryption_key=base64.b64encode(b"k" * 32).decode())
    backup = Backup(moto_server, local_resources, project, session["id"])
    raw = backup.raw_bytes()
    for secret in (b"Ada Lovelace", b"metadata-secret-7c1f", b"message-secret-93ab", b"kkkk"):
        assert secret not in raw  # neither the metadata, the messages nor the client's key in the clear
    assert "metadata" not in backup.session_item and "metadata_sealed" in backup.session_item
    assert all("content" not in item for item in backup.message_items)
    # The keys table holds the project's key (wrapped by KMS) and the session's (wrapped by the project's).
    key_items = backup.dynamodb.scan(TableName=backup.table("KeysTable"))["Items"]
    names = {item["pk"]["S"] for item in key_items}
    assert keys.project_key_partition(project.project_id) in names
    assert keys.session_key_partition(project.project_id, session["id"]) in names
    got = api.call("GET", f"/v1/sessions/{session['id']}", key=project.api_key).body
    assert got["metadata"] == SECRET_METADATA and got["data_encryption_key"] == session["data_encryption_key"]
    listed = api.call("GET", f"/v1/sessions/{session['id']}/messages", key=project.api_key).body["items"]
    assert [m["content"] for m in listed] == [{**SECRET_MESSAGE, "n": n} for n in range(3)]


def test_a_backup_restored_after_teardown_cannot_be_read(
    api: Api,
    project: Project,
    invoker: Any,
    moto_server: Any,
    local_resources: Any,
    template: Any,
    teardown: TeardownPipeline,
) -> None:
    session = make_conversation(api, project)
    sid = session["id"]
    backup = Backup(moto_server, local_resources, project, sid)

    # Restored before the DELETE, the copy reads back in full through the service's own path...
    before = backup.restore(template, "before")
    restored = settings_of(
        invoker, sessions_table=before["SessionsTable"], messages_table=before["MessagesTable"]
    )
    got, contents = read_through(fresh_process(restored), project, sid)
    assert got["metadata"] == SECRET_METADATA
    assert contents == [{**SECRET_MESSAGE, "n": n} for n in range(3)]

    assert api.call("DELETE", f"/v1/sessions/{sid}", key=project.api_key).status == 200
    assert [run.failed_ids for run in teardown.drain()] == [[]]
    tombstone = next(
        item
        for item in api.call(
            "GET", "/v1/sessions", key=project.api_key, query={"include_deleted": "true"}
        ).body["items"]
        if item["id"] == sid
    )
    assert tombstone["teardown"]["state"] == "done" and tombstone["teardown"]["key_destroyed_at"]

    # ...restored after teardown, the same copy is noise: the service answers 404 for it, and its cipher
    # cannot open a single field (any process started after teardown; see docs for warm processes).
    after = backup.restore(template, "after")
    restored = settings_of(
        invoker, sessions_table=after["SessionsTable"], messages_table=after["MessagesTable"]
    )
    process = fresh_process(restored)
    with pytest.raises(NotFound):
        process.sessions.get(project.project_id, sid)
    with pytest.raises(NotFound):
        process.messages.page(project.project_id, sid, ListMessagesParams())
    sealed_metadata = backup.session_item["metadata_sealed"]["B"]
    with pytest.raises(KeyDestroyed):
        process.cipher.open(project.project_id, sid, "metadata", sealed_metadata)
    for item in backup.message_items:
        if "content_sealed" in item:
            with pytest.raises(KeyDestroyed):
                process.cipher.open(
                    project.project_id, sid, f"message:{item['message_id']['S']}", item["content_sealed"]["B"]
                )


def test_one_sessions_key_cannot_open_anothers_content(
    api: Api, project: Project, invoker: Any, moto_server: Any, local_resources: Any
) -> None:
    first, second = make_conversation(api, project), make_conversation(api, project)
    backup = Backup(moto_server, local_resources, project, first["id"])
    stolen = backup.session_item["metadata_sealed"]["B"]
    process = fresh_process(settings_of(invoker))
    assert process.cipher.open(project.project_id, first["id"], "metadata", stolen) == SECRET_METADATA
    with pytest.raises(ContentUnreadable):  # another session's key
        process.cipher.open(project.project_id, second["id"], "metadata", stolen)
    with pytest.raises(ContentUnreadable):  # the same key, another field
        process.cipher.open(project.project_id, first["id"], "data_encryption_key", stolen)
    message = next(item for item in backup.message_items if "content_sealed" in item)
    with pytest.raises(ContentUnreadable):  # the same session, another message's place
        process.cipher.open(
            project.project_id, first["id"], "message:msg_other", message["content_sealed"]["B"]
        )
    tampered = bytearray(stolen)
    tampered[-1] ^= 1
    with pytest.raises(ContentUnreadable):
        process.cipher.open(project.project_id, first["id"], "metadata", bytes(tampered))


def test_teardown_destroys_the_key_before_it_purges_and_keeps_the_audit(
    api: Api,
    project: Project,
    invoker: Any,
    moto_server: Any,
    local_resources: Any,
    teardown: TeardownPipeline,
    e2b_env: Any,
) -> None:
    session = make_conversation(api, project, config={"model": "m"})
    sid = session["id"]
    box = Sandbox.create(metadata={"project_id": project.project_id, "session_id": sid}, timeout=600)
    e2b_env.inject("DELETE", f"/sandboxes/{box.sandbox_id}", 500, times=50)  # the kill fails: teardown stops
    assert api.call("DELETE", f"/v1/sessions/{sid}", key=project.api_key).status == 200
    first = teardown.poll()
    assert first.received == 1 and first.failed_ids, first

    # The run that failed had already destroyed the key — before any purge: the content is still there,
    # unreadable.
    dynamodb = aws_client("dynamodb", moto_server.url, "us-east-1")
    key_item = dynamodb.get_item(
        TableName=str(local_resources.ref("KeysTable")),
        Key={"pk": {"S": keys.session_key_partition(project.project_id, sid)}},
        ConsistentRead=True,
    )
    assert "Item" not in key_item
    still_there = Backup(moto_server, local_resources, project, sid)
    assert len([item for item in still_there.message_items if "content_sealed" in item]) == 3
    assert "metadata_sealed" in still_there.session_item and "key_destroyed_at" in still_there.session_item
    destroyed_at = still_there.session_item["key_destroyed_at"]["S"]

    e2b_env.reset_faults()
    teardown.expire_visibility()
    assert [run.failed_ids for run in teardown.drain()] == [[]]
    purged = Backup(moto_server, local_resources, project, sid)
    assert purged.message_items == [] and "metadata_sealed" not in purged.session_item
    assert purged.session_item["key_destroyed_at"]["S"] == destroyed_at  # recorded once, by the first run
    assert purged.session_item["teardown_completed_at"]["S"] >= destroyed_at
    audit = fresh_process(settings_of(invoker, "CreateSessionFunction")).store.audit_entries(
        project.project_id, sid
    )
    assert [entry["config"] for entry in audit if entry["kind"] == "config"] == [{"model": "m"}]


def test_the_clients_own_key_and_opaque_content_are_kept_as_given_and_purged(
    api: Api, project: Project, moto_server: Any, local_resources: Any, teardown: TeardownPipeline
) -> None:
    client_key = base64.b64encode(bytes(range(256)) * 4).decode()  # exactly 1 KiB
    session = api.create(project, data_encryption_key=client_key)
    assert session["data_encryption_key"] == client_key
    sid = session["id"]
    got = api.call("GET", f"/v1/sessions/{sid}", key=project.api_key).body
    listed = api.call("GET", "/v1/sessions", key=project.api_key).body["items"]
    assert got["data_encryption_key"] == client_key
    assert next(item for item in listed if item["id"] == sid)["data_encryption_key"] == client_key
    opaque = "AAECAwQFBgcICQoLDA0ODw=="  # the client's ciphertext: stored and returned as is
    appended = api.call("POST", f"/v1/sessions/{sid}/messages", key=project.api_key, body={"content": opaque})
    assert appended.status == 201 and appended.body["content"] == opaque
    page = api.call("GET", f"/v1/sessions/{sid}/messages", key=project.api_key).body
    assert [m["content"] for m in page["items"]] == [opaque]

    assert api.call("DELETE", f"/v1/sessions/{sid}", key=project.api_key).status == 200
    assert [run.failed_ids for run in teardown.drain()] == [[]]
    purged = Backup(moto_server, local_resources, project, sid)
    assert "data_encryption_key_sealed" not in purged.session_item and purged.message_items == []


@pytest.mark.parametrize(
    "bad",
    ["not base64!", base64.b64encode(b"x" * 1025).decode(), "", 42],
    ids=["not-base64", "over-1KiB", "empty", "not-a-string"],
)
def test_a_bad_data_encryption_key_is_422_and_creates_nothing(api: Api, project: Project, bad: Any) -> None:
    listing = {"user_id": "dek-check"}
    before = api.call("GET", "/v1/sessions", key=project.api_key, query=listing).body["items"]
    reply = api.call(
        "POST", "/v1/sessions", key=project.api_key, body={"user_id": "dek-check", "data_encryption_key": bad}
    )
    assert reply.status == 422, reply.body
    assert reply.body["error"]["code"] == "validation_error"
    assert "data_encryption_key" in str(reply.body["error"]["details"])
    assert api.call("GET", "/v1/sessions", key=project.api_key, query=listing).body["items"] == before


def test_an_idempotency_record_is_sealed_with_its_session_and_shredded_with_it(
    api: Api,
    project: Project,
    invoker: Any,
    moto_server: Any,
    local_resources: Any,
    teardown: TeardownPipeline,
) -> None:
    """The first response an Idempotency-Key keeps for 24 h is content too (a created session's metadata, an
    appended message): it is stored sealed under the session's key."""
    dynamodb = aws_client("dynamodb", moto_server.url, "us-east-1")
    table = str(local_resources.ref("IdempotencyTable"))

    before = {item["id"]["S"] for item in dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]}
    created = api.call(
        "POST",
        "/v1/sessions",
        key=project.api_key,
        body={"user_id": "u1", "metadata": SECRET_METADATA},
        headers={"idempotency-key": "create-1"},
    )
    sid = created.body["id"]
    path = f"/v1/sessions/{sid}/messages"
    once = {"idempotency-key": "append-1"}
    first = api.call("POST", path, key=project.api_key, body={"content": SECRET_MESSAGE}, headers=once)
    again = api.call("POST", path, key=project.api_key, body={"content": SECRET_MESSAGE}, headers=once)
    assert first.status == 201 and again.status == 201 and again.headers.get("idempotent-replayed") == "true"
    assert again.body == first.body and again.body["content"] == SECRET_MESSAGE
    ours = [
        item
        for item in dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
        if item["id"]["S"] not in before
    ]
    assert len(ours) == 2
    for secret in (b"Ada Lovelace", b"metadata-secret-7c1f", b"message-secret-93ab"):
        assert secret not in repr(ours).encode()
    stored = [json.loads(item["data"]["S"]) for item in ours]
    assert {record["session_id"] for record in stored} == {sid}

    assert api.call("DELETE", f"/v1/sessions/{sid}", key=project.api_key).status == 200
    # Every path of a deleted session is 404, a replay's too (its key may still be in a warm process), and a
    # key reused with another body (422 on a live session).
    late = api.call("POST", path, key=project.api_key, body={"content": SECRET_MESSAGE}, headers=once)
    assert late.status == 404 and "idempotent-replayed" not in late.headers
    reused = api.call("POST", path, key=project.api_key, body={"content": "other"}, headers=once)
    assert reused.status == 404, reused.body
    assert [run.failed_ids for run in teardown.drain()] == [[]]
    process = fresh_process(settings_of(invoker, "AppendMessageFunction"))
    for record in stored:
        with pytest.raises(KeyDestroyed):
            process.cipher.open(
                project.project_id, sid, "idempotent-response", base64.b64decode(record["sealed"])
            )
    replay = api.call(
        "POST",
        "/v1/sessions",
        key=project.api_key,
        body={"user_id": "u1", "metadata": SECRET_METADATA},
        headers={"idempotency-key": "create-1"},
    )
    assert replay.status == 404 and replay.body["error"]["code"] == "not_found"


def test_a_lone_surrogate_in_content_is_422_and_changes_nothing(api: Api, project: Project) -> None:
    """JSON may escape half a surrogate pair alone; that is no Unicode text and cannot be sealed or stored."""
    session = api.create(project)
    listing = {"user_id": "surrogate"}
    bad = '{"user_id": "surrogate", "metadata": {"note": "\\ud800"}}'
    reply = api.call("POST", "/v1/sessions", key=project.api_key, raw_body=bad)
    assert reply.status == 422 and reply.body["error"]["details"][0]["type"] == "unicode"
    assert api.call("GET", "/v1/sessions", key=project.api_key, query=listing).body["items"] == []
    path = f"/v1/sessions/{session['id']}"
    patched = api.call("PATCH", path, key=project.api_key, raw_body='{"metadata": {"x": "\\udfff"}}')
    appended = api.call("POST", f"{path}/messages", key=project.api_key, raw_body='{"content": "\\ud83d"}')
    assert patched.status == 422 and appended.status == 422
    assert api.call("GET", path, key=project.api_key).body == session  # version 1, unchanged
    assert api.call("GET", f"{path}/messages", key=project.api_key).body["items"] == []
    pair = api.call("POST", f"{path}/messages", key=project.api_key, raw_body='{"content": "\\ud83d\\ude00"}')
    assert pair.status == 201 and pair.body["content"] == "\U0001f600"  # a whole pair is a character


def test_teardown_of_a_session_whose_tombstone_expired_still_deletes_its_key(
    api: Api, project: Project, moto_server: Any, local_resources: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    sid = session["id"]
    dynamodb = aws_client("dynamodb", moto_server.url, "us-east-1")
    key = {"pk": {"S": keys.session_key_partition(project.project_id, sid)}}
    keys_table = str(local_resources.ref("KeysTable"))
    assert "Item" in dynamodb.get_item(TableName=keys_table, Key=key, ConsistentRead=True)
    dynamodb.delete_item(  # as DynamoDB's TTL removes a tombstone after TombstoneRetentionDays
        TableName=str(local_resources.ref("SessionsTable")),
        Key={"pk": {"S": keys.session_partition(project.project_id, sid)}, "session_id": {"S": sid}},
    )
    teardown.send_raw(json.dumps({"project_id": project.project_id, "session_id": sid, "deleted_at": "x"}))
    assert [run.failed_ids for run in teardown.drain()] == [[]]
    assert "Item" not in dynamodb.get_item(TableName=keys_table, Key=key, ConsistentRead=True)
