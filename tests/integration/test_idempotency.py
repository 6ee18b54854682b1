"""Idempotency keys through the local API Gateway and the route functions, against moto (IdempotencyTable from
template.yaml), redis-server and the local E2B API: a retry with the same key replays the first response and
runs nothing; another request with that key is 422; keys are scoped per project; failures are not
remembered; records expire after 24 h. (A key still in progress, 409, needs two invocations truly in
flight at once: tests/e2e/test_edge.py, against the dev stack's worker processes.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3

from plugins.api import Api, Project

IDEMPOTENT_ROUTES = ("create_session", "execute", "call_tool", "append_message")
APPEND_RUN = {"command": "echo run >> runs.txt; wc -l < runs.txt"}


def runs_in(api: Api, project: Project, session_id: str, name: str = "runs.txt") -> str:
    """What the sandbox's file says (read without a key: a read never replays)."""
    reply = api.call(
        "POST", f"/v1/sessions/{session_id}/execute", key=project.api_key, body={"command": f"cat {name}"}
    )
    assert reply.status == 200, reply.body
    return str(reply.body["stdout"])


def test_a_retried_execute_with_the_same_key_runs_once(api: Api, project: Project) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}/execute"
    once = {"Idempotency-Key": "run-1"}
    first = api.call("POST", path, key=project.api_key, body=APPEND_RUN, headers=once)
    assert first.status == 200 and first.body["stdout"] == "1\n"
    assert "idempotent-replayed" not in first.headers

    retried = api.call("POST", path, key=project.api_key, body=APPEND_RUN, headers=once)
    assert retried.status == 200 and retried.headers["idempotent-replayed"] == "true"
    assert retried.body == first.body  # the first response, sandbox id and duration included
    assert list(retried.body) == list(first.body)  # even in the same order
    assert runs_in(api, project, session["id"]) == "run\n"  # the sandbox saw one run

    # Another request under that key is refused, and runs nothing either.
    other = api.call(
        "POST", path, key=project.api_key, body={"command": "echo run >> runs.txt"}, headers=once
    )
    assert other.status == 422 and other.body["error"]["code"] == "idempotency_key_reused"
    second = api.create(project)
    elsewhere = f"/v1/sessions/{second['id']}/execute"  # the same body on another session's path
    moved = api.call("POST", elsewhere, key=project.api_key, body=APPEND_RUN, headers=once)
    assert moved.status == 422 and moved.body["error"]["code"] == "idempotency_key_reused"
    assert runs_in(api, project, session["id"]) == "run\n"
    # Without a key, a request runs every time, as before.
    again = api.call("POST", path, key=project.api_key, body=APPEND_RUN)
    assert again.status == 200 and again.body["stdout"] == "2\n"


def test_a_retried_tool_call_and_message_append_are_replayed(api: Api, project: Project) -> None:
    session = api.create(project)
    sid = session["id"]
    call = {"arguments": {"command": "echo call >> calls.txt; wc -l < calls.txt"}}
    replies = [
        api.call(
            "POST",
            f"/v1/sessions/{sid}/tools/run_command/call",
            key=project.api_key,
            body=call,
            headers={"Idempotency-Key": "call-1"},
        )
        for _ in range(2)
    ]
    assert [r.status for r in replies] == [200, 200] and replies[0].body == replies[1].body
    assert (
        "idempotent-replayed" not in replies[0].headers
        and replies[1].headers["idempotent-replayed"] == "true"
    )
    assert runs_in(api, project, sid, "calls.txt") == "call\n"

    message = {"content": {"role": "user", "text": "hi"}}
    appended = [
        api.call(
            "POST",
            f"/v1/sessions/{sid}/messages",
            key=project.api_key,
            body=message,
            headers={"Idempotency-Key": "msg-1"},
        )
        for _ in range(2)
    ]
    assert [r.status for r in appended] == [201, 201] and appended[0].body == appended[1].body
    assert appended[1].headers["idempotent-replayed"] == "true"
    listed = api.call("GET", f"/v1/sessions/{sid}/messages", key=project.api_key).body
    assert [m["seq"] for m in listed["items"]] == [1]


def test_create_session_replays_and_keys_are_scoped_per_project(
    api: Api, project: Project, other_project: Project, local_resources: Any, aws_env: Any
) -> None:
    table, ddb = local_resources.ref("IdempotencyTable"), boto3.client("dynamodb")
    before = {item["id"]["S"] for item in ddb.scan(TableName=table)["Items"]}
    key = {"Idempotency-Key": "create-once"}
    body = {"user_id": "idem"}
    first = api.call("POST", "/v1/sessions", key=project.api_key, body=body, headers=key)
    retried = api.call("POST", "/v1/sessions", key=project.api_key, body=body, headers=key)
    assert (first.status, retried.status) == (201, 201) and retried.body == first.body
    assert retried.headers["idempotent-replayed"] == "true"
    listed = api.call("GET", "/v1/sessions", key=project.api_key, query={"user_id": "idem"}).body
    assert [s["id"] for s in listed["items"]] == [first.body["id"]]

    # Project B's identical key and body is its own request: a new session of its own, not A's.
    theirs = api.call("POST", "/v1/sessions", key=other_project.api_key, body=body, headers=key)
    assert theirs.status == 201 and "idempotent-replayed" not in theirs.headers
    assert theirs.body["id"] != first.body["id"]
    assert api.call("GET", f"/v1/sessions/{theirs.body['id']}", key=other_project.api_key).status == 200
    assert api.call("GET", f"/v1/sessions/{theirs.body['id']}", key=project.api_key).status == 404

    # One record per project, for the route, kept 24 h (the table's TTL attribute).
    made = [item for item in ddb.scan(TableName=table)["Items"] if item["id"]["S"] not in before]
    assert len(made) == 2 and {item["status"]["S"] for item in made} == {"COMPLETED"}
    assert all(item["id"]["S"].startswith("POST /v1/sessions#") for item in made)
    assert all(86_400 - 120 < int(item["expiration"]["N"]) - time.time() <= 86_400 for item in made)


def test_a_failed_request_is_not_remembered(api: Api, project: Project) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}/tools/stamp/call"
    key = {"Idempotency-Key": "after-404"}
    assert api.call("POST", path, key=project.api_key, body={}, headers=key).status == 404  # no such tool yet
    tool = {
        "description": "Stamp a file",
        "input_schema": {"type": "object"},
        "command": "echo stamp >> stamps.txt; cat stamps.txt",
    }
    assert api.call("PUT", "/v1/tools/stamp", key=project.api_key, body=tool).status == 201
    ran = api.call("POST", path, key=project.api_key, body={}, headers=key)
    assert ran.status == 200 and ran.body["content"][0]["text"] == "stamp\n"
    assert "idempotent-replayed" not in ran.headers


def test_the_key_is_1_to_255_characters(api: Api, project: Project) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}/execute"
    for bad in ("", "k" * 256):
        reply = api.call("POST", path, key=project.api_key, body=APPEND_RUN, headers={"Idempotency-Key": bad})
        assert reply.status == 422 and reply.body["error"]["code"] == "validation_error"
        assert reply.body["error"]["details"][0]["loc"] == ["header", "Idempotency-Key"]
    assert runs_in(api, project, session["id"]) == ""  # nothing ran (cat of a missing file prints nothing)
    longest = api.call(
        "POST", path, key=project.api_key, body=APPEND_RUN, headers={"Idempotency-Key": "k" * 255}
    )
    assert longest.status == 200 and longest.body["stdout"] == "1\n"


def test_a_large_result_is_replayed_cut_to_fit_and_still_runs_once(api: Api, project: Project) -> None:
    """~1 MB of incompressible output cannot be kept whole in a DynamoDB item (400 KB): the replay keeps
    a shorter stdout, flagged truncated; the command ran once all the same."""
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}/execute"
    noisy = {"command": "echo run >> runs.txt; head -c 750000 /dev/urandom | base64 -w0"}
    key = {"Idempotency-Key": "large"}
    first = api.call("POST", path, key=project.api_key, body=noisy, headers=key)
    assert (
        first.status == 200 and first.body["stdout_bytes"] == 1_000_000 and not first.body["stdout_truncated"]
    )
    replayed = api.call("POST", path, key=project.api_key, body=noisy, headers=key)
    assert replayed.status == 200 and replayed.headers["idempotent-replayed"] == "true"
    assert replayed.body["stdout_truncated"] is True
    assert 0 < len(replayed.body["stdout"]) < len(first.body["stdout"])
    assert first.body["stdout"].startswith(replayed.body["stdout"])
    assert replayed.body["exit_code"] == first.body["exit_code"] == 0
    assert runs_in(api, project, session["id"]) == "run\n"


def test_the_idempotency_utility_is_imported_only_by_a_request_with_the_header() -> None:
    """Cold start: loading a route module that takes Idempotency-Key leaves Powertools' utility (and boto3,
    which it brings) unloaded; bench/edge.py measures what it adds when a request needs it."""
    root = Path(__file__).resolve().parents[2]
    apps = [str(root / "functions" / name / "app.py") for name in IDEMPOTENT_ROUTES]
    probe = (
        "import runpy, sys\n"
        f"for app in {apps!r}:\n"
        "    runpy.run_path(app)\n"
        "print(sorted(m for m in sys.modules if m.startswith('aws_lambda_powertools.utilities.idempotency')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=root)
    assert done.stdout.strip() == "[]"
