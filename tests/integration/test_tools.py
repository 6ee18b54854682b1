"""The tool router over REST, through the local API Gateway and the route functions, against moto,
redis-server and the local E2B API with the real e2b SDK: the catalog (CRUD, validation, isolation), a
session's tools and their search ranking, and calls (catalog commands and built-ins)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline

ECHO_ARGS = "printf '%s' \"$TOOL_ARGUMENTS\""


def tool_body(**changes: Any) -> dict[str, Any]:
    body = {
        "description": "Echo the arguments back as JSON",
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "command": ECHO_ARGS,
        "tags": ["demo"],
    }
    return {**body, **changes}


def put(api: Api, project: Project, name: str, **changes: Any) -> Any:
    return api.call("PUT", f"/v1/tools/{name}", key=project.api_key, body=tool_body(**changes))


def call(api: Api, project: Project, session_id: str, name: str, arguments: Any = None, **kw: Any) -> Any:
    body = {"arguments": arguments} if arguments is not None else None
    return api.call(
        "POST",
        f"/v1/sessions/{session_id}/tools/{name}/call",
        key=kw.get("key", project.api_key),
        body=body,
        token=kw.get("token"),
    )


# --- the catalog ------------------------------------------------------------------------------------------


def test_catalog_create_replace_get_list_delete(api: Api, project: Project, other_project: Project) -> None:
    created = put(api, project, "echo_args")
    assert created.status == 201 and created.body["name"] == "echo_args" and created.body["timeout_s"] == 10
    replaced = put(api, project, "echo_args", description="Echo v2", timeout_s=5)
    assert replaced.status == 200 and replaced.body["description"] == "Echo v2"
    assert replaced.body["created_at"] == created.body["created_at"]
    got = api.call("GET", "/v1/tools/echo_args", key=project.api_key)
    assert got.status == 200 and got.body == replaced.body
    for name in ("b_tool", "a_tool", "c_tool"):
        assert put(api, project, name).status == 201
    names, cursor = [], None
    while True:
        page = api.call(
            "GET",
            "/v1/tools",
            key=project.api_key,
            query={"limit": "2", **({"cursor": cursor} if cursor else {})},
        )
        assert page.status == 200
        names += [tool["name"] for tool in page.body["items"]]
        cursor = page.body["next_cursor"]
        if not cursor:
            break
    assert names == ["a_tool", "b_tool", "c_tool", "echo_args"]
    # Another project sees none of it and cannot touch it.
    assert api.call("GET", "/v1/tools/echo_args", key=other_project.api_key).status == 404
    assert api.call("GET", "/v1/tools", key=other_project.api_key).body == {"items": [], "next_cursor": None}
    assert api.call("DELETE", "/v1/tools/echo_args", key=other_project.api_key).status == 404
    assert api.call("DELETE", "/v1/tools/echo_args", key=project.api_key).status == 200
    assert api.call("GET", "/v1/tools/echo_args", key=project.api_key).status == 404
    assert api.call("DELETE", "/v1/tools/echo_args", key=project.api_key).status == 404


@pytest.mark.parametrize(
    ("name", "changes"),
    [
        ("Bad-Name", {}),
        ("run_command", {}),  # reserved for the built-in
        ("x" * 65, {}),
        ("ok_name", {"input_schema": {"type": "string"}}),  # not an object schema
        ("ok_name", {"input_schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}),
        ("ok_name", {"input_schema": {"type": "object", "minProperties": -1}}),
        ("ok_name", {"description": ""}),
        ("ok_name", {"description": "d" * 2001}),
        ("ok_name", {"timeout_s": 21}),
        ("ok_name", {"command": ""}),
        ("ok_name", {"tags": "not-a-list"}),
        ("ok_name", {"surprise": True}),
    ],
)
def test_invalid_tools_are_422_and_nothing_is_stored(
    api: Api, project: Project, name: str, changes: dict[str, Any]
) -> None:
    reply = put(api, project, name, **changes)
    assert reply.status == 422, reply.body
    assert reply.body["error"]["code"] == "validation_error" and reply.body["error"].get("details")
    assert api.call("GET", "/v1/tools", key=project.api_key).body["items"] == []


def test_the_catalog_is_for_the_project_key_only(
    api: Api, project: Project, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    token = api.call("POST", f"/v1/sessions/{session['id']}/tokens", key=project.api_key).body["token"]
    assert api.call("PUT", "/v1/tools/sneaky", key=None, token=token, body=tool_body()).status == 401
    assert api.call("GET", "/v1/tools", key=None, token=token).status == 401
    assert api.call("GET", "/v1/tools", key=project.api_key).body["items"] == []


# --- a session's tools and search -------------------------------------------------------------------------


def test_a_session_lists_builtins_and_catalog_tools_and_its_allow_list_narrows_them(
    api: Api, project: Project
) -> None:
    put(api, project, "echo_args")
    session = api.create(project)
    listed = api.call(
        "GET", f"/v1/sessions/{session['id']}/tools", key=project.api_key, query={"limit": "50"}
    )
    names = [tool["name"] for tool in listed.body["items"]]
    assert names == sorted(
        ["run_command", "read_file", "write_file", "list_files", "search_tools", "echo_args"]
    )
    assert all(set(tool) == {"name", "description", "input_schema", "tags"} for tool in listed.body["items"])
    narrow = api.create(project, config={"tools": ["read_file", "echo_args", "no_such_tool"]})
    listed = api.call("GET", f"/v1/sessions/{narrow['id']}/tools", key=project.api_key)
    assert [tool["name"] for tool in listed.body["items"]] == ["echo_args", "read_file"]


def test_search_finds_the_right_tool_first_among_200(api: Api, project: Project, invoker: Any) -> None:
    from session_service.domain.requests import PutToolRequest
    from session_service.runtime import container_for
    from session_service.settings import Settings

    catalog = container_for(Settings.from_env(invoker.env_for("PutToolFunction"))).tool_catalog
    topics = ["invoice", "weather", "calendar", "email", "database", "payment", "shipping", "translation"]
    verbs = ["create", "list", "delete", "update", "fetch"]
    objects = ["record", "report", "entry", "item", "summary"]
    made = 0
    for topic in topics:
        for verb in verbs:
            for thing in objects:
                if made == 199:
                    break
                name = f"{topic}_{verb}_{thing}"  # the filler goes through the route's own service
                body = tool_body(description=f"{verb.title()} a {topic} {thing} in the {topic} system")
                catalog.put(project.project_id, name, PutToolRequest.model_validate(body))
                made += 1
    special = "geocode_street_address"
    put(
        api,
        project,
        special,
        description="Convert a postal street address into latitude and longitude coordinates",
    )
    session = api.create(project)
    reply = api.call(
        "GET",
        f"/v1/sessions/{session['id']}/tools",
        key=project.api_key,
        query={"query": "latitude longitude for a postal address", "limit": "5"},
    )
    assert reply.status == 200
    items = reply.body["items"]
    assert items[0]["name"] == special and items[0]["score"] > 0
    assert [item["score"] for item in items] == sorted((item["score"] for item in items), reverse=True)
    assert reply.body["next_cursor"] is None
    second = api.call(
        "GET",
        f"/v1/sessions/{session['id']}/tools",
        key=project.api_key,
        query={"query": "delete shipping report"},
    )
    assert second.body["items"][0]["name"] == "shipping_delete_report"
    bad = api.call("GET", f"/v1/sessions/{session['id']}/tools", key=project.api_key, query={"limit": "51"})
    assert bad.status == 422


def test_the_search_tools_builtin_ranks_as_the_search_route_does(api: Api, project: Project) -> None:
    descriptions = {
        "weather_forecast": "Fetch the weather forecast for a city",
        "weather_history": "Fetch past weather records for a city and a date range",
        "city_population": "Look up the population of a city",
        "send_email": "Send an email to a recipient",
        "currency_rates": "Fetch today's currency exchange rates",
    }
    for name, description in descriptions.items():
        assert put(api, project, name, description=description).status == 201
    session = api.create(project)
    query = "weather forecast for a city"
    best = ["weather_forecast", "weather_history", "city_population"]  # only tools that match at all
    for limit, expected in [(10, best), (2, best[:2])]:
        listed = api.call(
            "GET",
            f"/v1/sessions/{session['id']}/tools",
            key=project.api_key,
            query={"query": query, "limit": str(limit)},
        )
        assert listed.status == 200
        ranked = [(tool["name"], tool["score"]) for tool in listed.body["items"]]
        assert [name for name, _ in ranked] == expected

        arguments = {"query": query, "limit": limit}
        rest = call(api, project, session["id"], "search_tools", arguments)
        assert rest.status == 200 and rest.body["is_error"] is False
        found = rest.body["structured_content"]["tools"]
        assert [(tool["name"], tool["score"]) for tool in found] == ranked
        assert json.loads(rest.body["content"][0]["text"]) == found

        mcp = api.call(
            "POST",
            f"/v1/sessions/{session['id']}/mcp",
            key=project.api_key,
            body={
                "jsonrpc": "2.0",
                "id": limit,
                "method": "tools/call",
                "params": {"name": "search_tools", "arguments": arguments},
            },
            headers={"mcp-protocol-version": "2025-06-18", "accept": "application/json, text/event-stream"},
        )
        assert mcp.status == 200, mcp.body
        result = mcp.body["result"]
        assert result["isError"] is False
        assert [(tool["name"], tool["score"]) for tool in result["structuredContent"]["tools"]] == ranked


# --- calls ------------------------------------------------------------------------------------------------


def test_a_catalog_tool_gets_its_arguments_as_data_never_as_code(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline, invoker: Any
) -> None:
    put(api, project, "echo_args")
    session = api.create(project)
    hostile = {"text": "$(touch /tmp/pwned); `id`; ' \" \n done"}
    reply = call(api, project, session["id"], "echo_args", hostile)
    assert reply.status == 200, reply.body
    assert reply.body["is_error"] is False
    assert json.loads(reply.body["content"][0]["text"]) == hostile
    assert reply.body["structured_content"] == hostile  # stdout was a JSON object
    assert reply.body["sandbox_id"] and reply.body["duration_ms"] >= 0
    from session_service.runtime import container_for
    from session_service.settings import Settings

    store = container_for(Settings.from_env(invoker.env_for("CallToolFunction"))).store
    usage = [e for e in store.audit_entries(project.project_id, session["id"]) if e["kind"] == "usage"]
    assert [u["tool"] for u in usage] == ["echo_args"]


def test_a_failing_command_is_a_result_with_is_error_and_its_stderr(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    put(api, project, "fails", command="echo partial; echo 'it broke' >&2; exit 3")
    put(api, project, "plain_text", command="echo not json")
    session = api.create(project)
    failed = call(api, project, session["id"], "fails", {"text": "x"})
    assert failed.status == 200
    assert failed.body["is_error"] is True and failed.body["content"] == [
        {"type": "text", "text": "it broke\n"}
    ]
    assert "structured_content" not in failed.body
    plain = call(api, project, session["id"], "plain_text", {"text": "x"})
    assert plain.body["is_error"] is False and "structured_content" not in plain.body


def test_invalid_arguments_are_422_with_details_and_nothing_runs(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    put(api, project, "echo_args")
    session = api.create(project)
    for arguments in ({}, {"text": 5}):
        reply = call(api, project, session["id"], "echo_args", arguments)
        assert reply.status == 422 and reply.body["error"]["details"], arguments
    assert call(api, project, session["id"], "echo_args", "not-an-object").status == 422
    for arguments in (
        {"command": "echo a\u0000b"},  # a NUL byte cannot reach execve
        {"command": "true", "env": {"A": "\u0000"}},
        {"command": "true", "env": {"1A": "x"}},
    ):
        assert call(api, project, session["id"], "run_command", arguments).status == 422, arguments
    assert call(api, project, session["id"], "read_file", {"path": "/tmp/a\u0000"}).status == 422
    assert e2b_env.sandboxes() == []  # nothing ran, no sandbox was even created


def test_a_tool_the_session_may_not_use_or_that_does_not_exist_is_404(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    put(api, project, "echo_args")
    narrow = api.create(project, config={"tools": ["read_file"]})
    assert call(api, project, narrow["id"], "echo_args", {"text": "x"}).status == 404
    assert call(api, project, narrow["id"], "run_command", {"command": "id"}).status == 404
    assert call(api, project, narrow["id"], "nothing_here", {}).status == 404
    assert e2b_env.sandboxes() == []


def test_run_command_builtin_reports_output_and_exit(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    reply = call(
        api,
        project,
        session["id"],
        "run_command",
        {"command": "echo $GREETING; exit 4", "env": {"GREETING": "hi"}},
    )
    assert reply.status == 200
    assert reply.body["is_error"] is True
    structured = reply.body["structured_content"]
    assert reply.body["content"] == [{"type": "text", "text": "hi\n"}]  # the output, once
    assert (
        structured["exit_code"] == 4 and structured["timed_out"] is False and structured["stdout_bytes"] == 3
    )


def test_every_session_tool_route_is_404_after_delete_for_key_and_token(
    api: Api, project: Project, other_project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    put(api, project, "echo_args")
    session = api.create(project)
    token = api.call("POST", f"/v1/sessions/{session['id']}/tokens", key=project.api_key).body["token"]
    routes = [
        ("GET", f"/v1/sessions/{session['id']}/tools", None),
        ("POST", f"/v1/sessions/{session['id']}/tools/echo_args/call", {"arguments": {"text": "x"}}),
        ("POST", f"/v1/sessions/{session['id']}/tools/search_tools/call", {"arguments": {"query": "echo"}}),
    ]
    for method, path, body in routes:  # another project: 404 while it lives
        assert api.call(method, path, key=other_project.api_key, body=body).status == 404, path
    for method, path, body in routes:
        assert api.call(method, path, key=None, token=token, body=body).status == 200, path
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    for method, path, body in routes:
        assert api.call(method, path, key=project.api_key, body=body).status == 404, path
        assert api.call(method, path, key=None, token=token, body=body).status == 404, path
