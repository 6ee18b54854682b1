"""Lambda's 6 MB response limit on the routes whose answer grows with what is stored or in the sandbox: list
pages of big items end early and say where to go on, read_file and list_files cut what would not fit, and a
catalog tool's result says its output was truncated. Through the local API Gateway, which answers 500 for a
function response over the limit as Lambda does, against the real services and the local E2B API."""

from __future__ import annotations

import json
from typing import Any

from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline
from session_service.domain.output import items_that_fit

LAMBDA_RESPONSE_LIMIT = 6_291_556
# A quote costs 4 bytes in a response (\" in the body, \\\" in the proxy response's string): 120 KB per item
# from a 60 KB body, so 60 items are about 7.2 MB, past the limit.
QUOTES = '"' * 30_000
ITEMS = 60


def lambda_response_size(body: Any) -> int:
    return len(json.dumps({"statusCode": 200, "body": json.dumps(body, separators=(",", ":"))}))


def mcp_post(api: Api, project: Project, session_id: str, method: str, params: dict, number: int = 1) -> Any:
    message = {"jsonrpc": "2.0", "id": number, "method": method, "params": params}
    return api.call(
        "POST",
        f"/v1/sessions/{session_id}/mcp",
        key=project.api_key,
        raw_body=json.dumps(message),
        headers={"mcp-protocol-version": "2025-06-18"},
    )


def test_a_page_of_big_sessions_ends_early_and_its_cursor_goes_on(api: Api, project: Project) -> None:
    created = {api.create(project, config={"x": QUOTES})["id"] for _ in range(ITEMS)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        reply = api.call(
            "GET",
            "/v1/sessions",
            key=project.api_key,
            query={"limit": "200", **({"cursor": cursor} if cursor else {})},
        )
        assert reply.status == 200, reply.body
        assert lambda_response_size(reply.body) < LAMBDA_RESPONSE_LIMIT
        pages += 1
        seen += [item["id"] for item in reply.body["items"]]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert pages >= 2  # the first page could not hold all 60
    assert len(seen) == len(set(seen)) and set(seen) == created


def test_a_page_of_big_messages_ends_early_with_has_more(api: Api, project: Project) -> None:
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}/messages"
    for _ in range(ITEMS):
        reply = api.call("POST", path, key=project.api_key, body={"content": {"text": QUOTES}})
        assert reply.status == 201, reply.body
    first = api.call("GET", path, key=project.api_key, query={"limit": "200", "after_seq": "0"})
    assert first.status == 200 and lambda_response_size(first.body) < LAMBDA_RESPONSE_LIMIT
    assert first.body["has_more"] is True and 0 < len(first.body["items"]) < ITEMS
    seqs = [item["seq"] for item in first.body["items"]]
    while True:
        reply = api.call("GET", path, key=project.api_key, query={"limit": "200", "after_seq": str(seqs[-1])})
        assert reply.status == 200 and lambda_response_size(reply.body) < LAMBDA_RESPONSE_LIMIT
        seqs += [item["seq"] for item in reply.body["items"]]
        if not reply.body["has_more"]:
            break
    assert seqs == list(range(1, ITEMS + 1))
    newest = api.call("GET", path, key=project.api_key, query={"limit": "200", "before_seq": "61"})
    assert newest.status == 200 and newest.body["has_more"] is True
    assert [item["seq"] for item in newest.body["items"]] == list(
        range(60, 60 - len(newest.body["items"]), -1)
    )


def test_pages_of_big_tools_end_early_on_rest_and_mcp(api: Api, project: Project) -> None:
    for number in range(ITEMS):
        tool = {
            "description": f"tool {number}",
            "input_schema": {"type": "object", "description": QUOTES},
            "command": "true",
        }
        assert api.call("PUT", f"/v1/tools/t{number:03}", key=project.api_key, body=tool).status == 201
    names: list[str] = []
    cursor = None
    while True:
        query = {"limit": "200", **({"cursor": cursor} if cursor else {})}
        reply = api.call("GET", "/v1/tools", key=project.api_key, query=query)
        assert reply.status == 200 and lambda_response_size(reply.body) < LAMBDA_RESPONSE_LIMIT
        names += [item["name"] for item in reply.body["items"]]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert names == [f"t{number:03}" for number in range(ITEMS)]

    session = api.create(project)
    listed = api.call(
        "GET", f"/v1/sessions/{session['id']}/tools", key=project.api_key, query={"limit": "50"}
    )
    assert listed.status == 200 and lambda_response_size(listed.body) < LAMBDA_RESPONSE_LIMIT
    assert listed.body["next_cursor"] is not None and len(listed.body["items"]) < 50

    mcp_names: list[str] = []
    cursor = None
    for number in range(1, 10):
        params = {"cursor": cursor} if cursor else {}
        reply = mcp_post(api, project, session["id"], "tools/list", params, number)
        assert reply.status == 200 and lambda_response_size(reply.body) < LAMBDA_RESPONSE_LIMIT
        result = reply.body["result"]
        mcp_names += [tool["name"] for tool in result["tools"]]
        cursor = result.get("nextCursor")
        if cursor is None:
            break
    assert number >= 2 and len(mcp_names) == len(set(mcp_names))
    assert {f"t{n:03}" for n in range(ITEMS)} <= set(mcp_names)


def call_tool(api: Api, project: Project, session_id: str, name: str, arguments: dict, **env: str) -> Any:
    return api.call(
        "POST",
        f"/v1/sessions/{session_id}/tools/{name}/call",
        key=project.api_key,
        body={"arguments": arguments},
        env=env,
    )


def test_read_file_of_control_bytes_is_cut_to_fit_the_response(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    """At the largest cap (2 MiB) a file of \\x01 bytes would be 7 bytes each on the wire: 10.5 MB."""
    session = api.create(project)
    two_mib = str(2 * 1024 * 1024)
    made = call_tool(
        api,
        project,
        session["id"],
        "run_command",
        {"command": "head -c 1500000 /dev/zero | tr '\\0' '\\001' > ctl"},
    )
    assert made.status == 200 and made.body["is_error"] is False, made.body
    reply = call_tool(
        api, project, session["id"], "read_file", {"path": "ctl"}, COMMAND_OUTPUT_CAP_BYTES=two_mib
    )
    assert reply.status == 200, reply.body
    assert lambda_response_size(reply.body) < LAMBDA_RESPONSE_LIMIT
    text = reply.body["content"][0]["text"]
    assert set(text) == {"\x01"} and 0 < len(text) < 1_500_000
    assert reply.body["structured_content"] == {"path": "ctl", "size": 1_500_000, "truncated": True}


def test_list_files_of_a_huge_directory_is_cut_to_fit_and_says_so(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    command = "mkdir big && cd big && for i in $(seq 1 9000); do : > $(printf 'f%05d%0200d' $i 0); done"
    made = call_tool(api, project, session["id"], "run_command", {"command": command, "timeout_s": 20})
    assert made.status == 200 and made.body["is_error"] is False, made.body
    reply = call_tool(api, project, session["id"], "list_files", {"path": "big"})
    assert reply.status == 200, reply.body
    assert lambda_response_size(reply.body) < LAMBDA_RESPONSE_LIMIT
    structured = reply.body["structured_content"]
    assert structured["truncated"] is True and 0 < len(structured["entries"]) < 9000
    assert reply.body["content"][0]["text"].endswith(
        f"[{9000 - len(structured['entries'])} more entries not shown]"
    )


def test_a_catalog_tools_result_says_its_output_was_truncated(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    command = "head -c 3000000 /dev/zero | tr '\\0' a; printf oops >&2"
    tool = {"description": "prints a lot", "input_schema": {"type": "object"}, "command": command}
    assert api.call("PUT", "/v1/tools/loud", key=project.api_key, body=tool).status == 201
    reply = call_tool(api, project, session["id"], "loud", {})
    assert reply.status == 200 and reply.body["is_error"] is False
    assert reply.body["output"] == {
        "exit_code": 0,
        "timed_out": False,
        "stdout_truncated": True,
        "stderr_truncated": False,
        "stdout_bytes": 3_000_000,
        "stderr_bytes": 4,
    }
    assert reply.body["content"][0]["text"] == "a" * 1024 * 1024
    over_mcp = mcp_post(api, project, session["id"], "tools/call", {"name": "loud", "arguments": {}})
    assert over_mcp.status == 200 and lambda_response_size(over_mcp.body) < LAMBDA_RESPONSE_LIMIT
    result = over_mcp.body["result"]
    assert (
        result["isError"] is False and result["_meta"]["session-service/output"]["stdout_truncated"] is True
    )


def test_a_page_is_cut_at_its_wire_budget_and_keeps_at_least_one_item() -> None:
    items = ["x" * 100] * 10  # each 104 bytes on the wire (its quotes escaped), and its comma
    assert items_that_fit(items, budget=10_000) == 10
    assert items_that_fit(items, budget=350) == 3
    assert items_that_fit(items, budget=10) == 1  # a page always moves its cursor on
    quotes = ['"' * 100] * 10  # a quote is 4 bytes on the wire: 404 each, and the comma
    assert items_that_fit(quotes, budget=1_300) == 3
