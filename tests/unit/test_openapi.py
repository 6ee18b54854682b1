"""The OpenAPI document: valid OpenAPI 3.1, the same as the committed files, covering exactly the template's
HttpApi routes with their authorizers, and saying what every operation can answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate

from devstack.template import Template
from session_service.edges import openapi
from session_service.edges.operations import OPERATIONS, operation_for

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = [ROOT / "docs" / "openapi.json", ROOT / "functions" / "openapi" / "openapi.json"]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi.build_document()


def operations_of(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema (and unresolvable $refs)


@pytest.mark.parametrize("path", COMMITTED, ids=lambda path: str(path.relative_to(ROOT)))
def test_the_committed_document_is_what_the_code_generates(path: Path) -> None:
    assert path.read_text() == openapi.render(), f"{path.relative_to(ROOT)} is stale: run `make openapi`"


def test_every_template_route_is_documented_and_nothing_else(
    document: dict[str, Any], template: Template
) -> None:
    routes = {(route.method, route.path) for route in template.routes}
    documented = set(operations_of(document))
    undocumented = {
        route
        for route in routes
        if not any(path == route[1] and route[0] in ("ANY", method) for method, path in documented)
    }
    assert not undocumented, f"routes of template.yaml missing from the document: {sorted(undocumented)}"
    unknown = {
        (method, path)
        for method, path in documented
        if (method, path) not in routes and ("ANY", path) not in routes
    }
    assert not unknown, f"operations the template has no route for: {sorted(unknown)}"


def test_every_operation_requires_the_credentials_its_route_checks(
    document: dict[str, Any], template: Template
) -> None:
    api = template.http_api
    assert api is not None
    expected = {
        "ApiKeyAuthorizer": [{"ApiKey": []}],
        "SessionAuthorizer": [{"ApiKey": []}, {"SessionToken": []}],
    }
    for route in template.routes:
        authorizer = route.authorizer or api.default_authorizer
        for (method, path), operation in operations_of(document).items():
            if path == route.path and route.method in ("ANY", method):
                wanted = [] if authorizer == "NONE" else expected[str(authorizer)]
                assert operation["security"] == wanted, (method, path, authorizer)


def test_every_operation_documents_the_errors_it_can_give(document: dict[str, Any]) -> None:
    for (method, path), operation in operations_of(document).items():
        statuses = set(operation["responses"])
        where = f"{method} {path}"
        assert any(status.startswith("2") for status in statuses), where
        if operation["security"]:
            assert {"401", "429", "503"} <= statuses, where
            assert set(operation["responses"]["429"]["headers"]) == {
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            }, where
        else:  # public: no limiter of ours, but API Gateway's stage throttling answers every route
            throttled = operation["responses"]["429"]
            assert throttled["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/GatewayError"
            }, where
            assert "headers" not in throttled, where
        if "{" in path:
            assert "404" in statuses, where
        if "requestBody" in operation:
            assert {"400", "413"} <= statuses, where
        for status, response in operation["responses"].items():
            if not status.startswith("2"):
                assert "application/json" in response["content"], (where, status)
            elif operation["security"]:  # the limiter says how much is left on every answer it allowed
                assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(
                    response["headers"]
                )


def test_the_edge_contract_names_its_operations(document: dict[str, Any]) -> None:
    """Idempotency keys and the compute rate limit, as the issue (10, parts 3 and 4) lists them."""
    by_id = {operation["operationId"]: operation for operation in operations_of(document).values()}
    idempotent = {op_id for op_id, operation in by_id.items() if operation.get("x-idempotent")}
    assert idempotent == {"createSession", "execute", "callTool", "appendMessage"}
    compute = {op_id for op_id, operation in by_id.items() if operation.get("x-rate-limit") == "compute"}
    assert compute == {"execute", "callTool", "mcp"}
    for op_id in idempotent:
        operation = by_id[op_id]
        header = next(
            p for p in operation["parameters"] if p["in"] == "header" and p["name"] == "Idempotency-Key"
        )
        assert header["schema"] == {"type": "string", "minLength": 1, "maxLength": 255}
        assert {"409", "422"} <= set(operation["responses"]), op_id
        for status, response in operation["responses"].items():
            if status.startswith("2"):
                assert "Idempotent-Replayed" in response["headers"], (op_id, status)


def test_operations_are_found_by_the_route_key_api_gateway_sends(template: Template) -> None:
    for route in template.routes:
        operation = operation_for(f"{route.method} {route.path}")
        assert operation is not None and operation.path == route.path, (route.method, route.path)
    mcp = operation_for("ANY /v1/sessions/{session_id}/mcp")
    assert mcp is not None and mcp.compute
    assert operation_for("POST /v1/nowhere") is None


def test_every_example_body_is_valid_for_its_schema_and_its_model(document: dict[str, Any]) -> None:
    resolver_root = {"components": document["components"]}
    for operation in OPERATIONS:
        if operation.body is None:
            continue
        assert operation.example is not None, f"{operation.operation_id}: give the operation an example body"
        schema = document["paths"][operation.path][operation.method.lower()]["requestBody"]["content"][
            "application/json"
        ]["schema"]
        jsonschema.validate(
            operation.example,
            {**schema, **resolver_root},
            cls=jsonschema.Draft202012Validator,
        )
        if hasattr(operation.body, "model_validate"):
            operation.body.model_validate(operation.example)


def test_response_objects_are_closed_so_undocumented_fields_fail(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for name in ("Session", "DeletedSession", "Execution", "Message", "CatalogTool", "ToolResult", "Error"):
        assert schemas[name]["additionalProperties"] is False, name
    # A tombstone is not a session: the listing's items tell them apart.
    tombstone = {
        "id": "ses_x",
        "user_id": "u",
        "tag": None,
        "version": 2,
        "created_at": "t",
        "updated_at": "t",
        "last_active_at": None,
        "deleted": True,
        "deleted_at": "t",
        "teardown": {
            "state": "pending",
            "completed_at": None,
            "sandboxes_killed": 0,
            "messages_purged": 0,
            "key_destroyed_at": None,
        },
    }
    session_schema = {**schemas["Session"], "components": document["components"]}
    assert not jsonschema.Draft202012Validator(session_schema).is_valid(tombstone)
    page = {**schemas["SessionPage"], "components": document["components"]}
    jsonschema.validate({"items": [tombstone], "next_cursor": None}, page)


def test_the_document_is_json_without_surprises() -> None:
    text = openapi.render()
    assert json.loads(text) == openapi.build_document()
    assert text.endswith("\n")
