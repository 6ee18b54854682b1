"""Bounded command output through the ExecuteFunction, the real e2b SDK and the local E2B API: a command that
prints far more than a Lambda response can carry still gets a 200 with the capped output, the flags, the
totals and its real exit code."""

from __future__ import annotations

import json
from typing import Any

from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline
from session_service.domain.output import DEFAULT_OUTPUT_CAP, BoundedOutput

EIGHT_MB = 8 * 1024 * 1024
LAMBDA_RESPONSE_LIMIT = 6_291_556


def lambda_response_size(body: Any) -> int:
    """The handler's return value as Lambda serialises it: the body is a JSON string inside the JSON."""
    return len(json.dumps({"statusCode": 200, "body": json.dumps(body, separators=(",", ":"))}))


def execute(api: Api, project: Project, session_id: str, command: str, **env: str) -> Any:
    return api.call(
        "POST", f"/v1/sessions/{session_id}/execute", key=project.api_key, body={"command": command}, env=env
    )


def test_eight_megabytes_of_output_are_capped_with_the_real_exit_code(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    command = f"head -c {EIGHT_MB} /dev/zero | tr '\\0' a; head -c 3000000 /dev/zero | tr '\\0' b >&2; exit 7"
    reply = execute(api, project, session["id"], command)
    assert reply.status == 200
    body = reply.body
    assert body["exit_code"] == 7 and body["timed_out"] is False
    assert body["stdout_truncated"] is True and body["stdout_bytes"] == EIGHT_MB
    assert body["stdout"] == "a" * DEFAULT_OUTPUT_CAP
    assert body["stderr_truncated"] is True and body["stderr_bytes"] == 3_000_000
    assert body["stderr"] == "b" * DEFAULT_OUTPUT_CAP
    assert lambda_response_size(body) < LAMBDA_RESPONSE_LIMIT


def test_output_under_the_cap_is_whole_and_not_flagged(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    body = execute(api, project, session["id"], "printf 'héllo\\n'").body
    assert body["stdout"] == "héllo\n" and body["stdout_bytes"] == 7 and body["stdout_truncated"] is False
    assert body["stderr"] == "" and body["stderr_bytes"] == 0 and body["stderr_truncated"] is False


def test_control_characters_and_invalid_utf8_cannot_push_the_response_past_the_limit(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    """Worst-case escaping: \\x01 adds 7 bytes to the response, an invalid byte (U+FFFD) 7 as well."""
    session = api.create(project)
    command = "head -c 4000000 /dev/zero | tr '\\0' '\\001'; head -c 4000000 /dev/zero | tr '\\0' '\\377' >&2"
    reply = execute(api, project, session["id"], command)
    assert reply.status == 200
    body = reply.body
    assert body["stdout_truncated"] and body["stderr_truncated"]
    assert set(body["stdout"]) == {"\x01"} and set(body["stderr"]) == {"\ufffd"}
    assert lambda_response_size(body) < LAMBDA_RESPONSE_LIMIT


def test_the_cap_is_a_stack_setting(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    body = execute(api, project, session["id"], "seq 1 100000", COMMAND_OUTPUT_CAP_BYTES="4096").body
    assert len(body["stdout"]) == 4096 and body["stdout_truncated"] is True  # bytes, newlines included
    assert body["stdout"].startswith("1\n2\n3\n") and body["stdout_bytes"] == len(
        "".join(f"{n}\n" for n in range(1, 100001))
    )


def test_a_chunk_is_cut_at_whichever_bound_comes_first() -> None:
    by_bytes = BoundedOutput(cap=5)
    for chunk in ("abc", "déf", "more"):
        by_bytes.feed(chunk)
    assert (by_bytes.text, by_bytes.truncated, by_bytes.total_bytes) == ("abcd", True, 3 + 4 + 4)
    by_wire = BoundedOutput(cap=100, wire_ceiling=12)
    by_wire.feed("ab\x01\x02")  # 1 + 1 + 7 + 7 bytes in the response: \x02 does not fit
    assert (by_wire.text, by_wire.truncated, by_wire.total_bytes) == ("ab\x01", True, 4)


def test_a_tool_call_printing_eight_megabytes_is_capped_the_same_way(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    command = f"head -c {EIGHT_MB} /dev/zero | tr '\\0' a; exit 5"
    reply = api.call(
        "POST",
        f"/v1/sessions/{session['id']}/tools/run_command/call",
        key=project.api_key,
        body={"arguments": {"command": command}},
    )
    assert reply.status == 200
    structured = reply.body["structured_content"]
    assert structured["exit_code"] == 5 and structured["stdout_truncated"] is True
    assert structured["stdout_bytes"] == EIGHT_MB and "stdout" not in structured  # the output is the text
    assert len(reply.body["content"][0]["text"]) == DEFAULT_OUTPUT_CAP
    assert reply.body["is_error"] is True
    assert lambda_response_size(reply.body) < LAMBDA_RESPONSE_LIMIT
    catalog = {"description": "prints a lot", "input_schema": {"type": "object"}, "command": command}
    assert api.call("PUT", "/v1/tools/loud", key=project.api_key, body=catalog).status == 201
    loud = api.call("POST", f"/v1/sessions/{session['id']}/tools/loud/call", key=project.api_key, body={})
    assert loud.status == 200 and loud.body["is_error"] is True
    assert lambda_response_size(loud.body) < LAMBDA_RESPONSE_LIMIT
