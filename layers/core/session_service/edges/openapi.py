"""The OpenAPI 3.1 document, generated from the code: the operations table (session_service.edges.operations),
the pydantic models that validate requests (session_service.domain.requests) and the response types
(session_service.edges.responses). Nothing here is written by hand per route, so the document says what the
code does; tests/unit/test_openapi.py compares it with template.yaml's routes and with docs/openapi.json.

`make openapi` (python -m session_service.edges.openapi) writes docs/openapi.json and the copy the deployed
OpenApiFunction serves (functions/openapi/openapi.json). Never imported on the request path.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from session_service.domain.ids import SESSION_ID
from session_service.domain.requests import MAX_BODY_BYTES, MAX_MESSAGE_BODY_BYTES, TOOL_NAME
from session_service.edges import operations as ops
from session_service.edges import responses
from session_service.edges.operations import OPERATIONS, Operation

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
COMPONENTS = "#/components/schemas/{model}"
JSON = "application/json"

# Response types that may carry fields this document does not list (the others are closed, so that an
# undocumented field fails the generated-case tests).
OPEN_TYPES = {"ErrorDetail", "JsonRpcMessage"}

DESCRIPTION = """\
Sessions for AI-agent tool routers: a session per agent conversation, owned by a project (tenant), with a
config, metadata, a version, a lazily created E2B sandbox, tools (REST and MCP) and messages.

**Authentication.** Project routes take the project's API key (`x-api-key`). A session's own routes also
take a session token (`Authorization: Bearer sst_...`, from `POST /v1/sessions/{session_id}/tokens`), which
reaches that session and nothing else. Another project's session, a deleted one and an unknown one are the
same 404, and nothing is changed.

**Errors.** Every error this service gives is `{"error": {"code", "message", "details"?}}`. API Gateway's
own refusals (no `x-api-key` header at all, throttling, a body over 10 MB, no such route) are
`{"message": ...}`. The MCP endpoint answers in JSON-RPC.

**Rate limits.** Per API key and per session token, a general limit and a tighter one for the operations
that spend compute (`x-rate-limit: compute`: execute, tool calls, MCP tools/call). Over a limit: 429
`rate_limited` with `Retry-After` and `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset`.

**Idempotency keys.** The operations marked `x-idempotent` take an `Idempotency-Key` header (1..255
characters, scoped to the project, kept 24 h). The same key with the same body replays the first response
(status and body) with `Idempotent-Replayed: true` and does not do the work again; the same key with another
body is 422 `idempotency_key_reused`; the same key while the first request still runs is 409
`idempotency_in_progress`. Once the session a key's request was about (or created) is deleted, a retry
with that key is 404, as every path of a deleted session is.
"""

ERROR_CODES: dict[int, str] = {
    400: "`bad_request`: no body, not UTF-8, not JSON, or an invalid cursor",
    401: (
        "`unauthorized`: no, an unknown, a revoked or an expired credential, "
        "or a session token on a project route"
    ),
    404: "`not_found`: no such resource in the caller's project (another project's, deleted or unknown)",
    409: "`version_conflict`, `conflict` (a race to retry) or `idempotency_in_progress`",
    413: "`payload_too_large`: the body is over the limit",
    422: "`validation_error` (details name each field) or `idempotency_key_reused`",
    429: "`rate_limited`, or API Gateway's throttling",
    503: "`service_unavailable` or `sandbox_unavailable`: nothing was done; retry",
}
# A public operation has no limiter of ours (no credential to count by): only API Gateway's throttling,
# which sends none of the RateLimit headers.
PUBLIC_THROTTLED = "API Gateway's stage throttling (its own body, no rate limit headers): retry later"


def build_document() -> dict[str, Any]:
    schemas, components = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(operation, schemas)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "session-service",
            "version": API_VERSION,
            "description": DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [
            {"url": ".", "description": "The API's base URL (the ApiUrl output; includes the stage)"}
        ],
        "tags": [
            {"name": "sessions", "description": "Sessions, their sandbox and their tokens"},
            {"name": "tools", "description": "The project's tool catalog and a session's tools"},
            {"name": "messages", "description": "A session's conversation"},
            {"name": "mcp", "description": "A session's Model Context Protocol endpoint"},
            {"name": "meta", "description": "This document"},
        ],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "SessionToken": {"type": "http", "scheme": "bearer", "bearerFormat": "sst_<id>_<secret>"},
            },
        },
    }


# --- schemas ---------------------------------------------------------------------------------------------


def _schemas() -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """The $ref of every request and response type, and the components they refer to."""
    inputs: list[tuple[Any, Any, TypeAdapter[Any]]] = []
    seen: set[Any] = set()
    for kind in (responses.Error, responses.GatewayError):
        inputs.append((kind, "serialization", TypeAdapter(kind)))
        seen.add(kind)
    for operation in OPERATIONS:
        if operation.body is not None and operation.body not in seen:
            seen.add(operation.body)
            inputs.append((operation.body, "validation", TypeAdapter(operation.body)))
        for kind in operation.responses.values():
            if kind is not None and kind not in seen:
                seen.add(kind)
                inputs.append((kind, "serialization", TypeAdapter(kind)))
    refs, definitions = TypeAdapter.json_schemas(inputs, ref_template=COMPONENTS)
    components: dict[str, Any] = definitions.get("$defs", {})
    for name, schema in components.items():
        closable = name not in OPEN_TYPES and schema.get("type") == "object" and "properties" in schema
        if closable and _is_response_type(name):
            schema["additionalProperties"] = False
    # A message is a request or notification (a method), or a response (session_service.edges.mcp._message).
    components["JsonRpcMessage"]["anyOf"] = [{"required": [name]} for name in ("method", "result", "error")]
    return {key: value for (key, _mode), value in refs.items()}, components


def _is_response_type(name: str) -> bool:
    return isinstance(getattr(responses, name, None), type)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = _without_null(prop)
        prop.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        if "description" in prop:
            parameter["description"] = prop.pop("description")
        parameters.append(parameter)
    return parameters


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`X | None` as a query parameter is X or absent: a query string has no null."""
    schema = copy.deepcopy(schema)
    branches = [branch for branch in schema.get("anyOf", []) if branch != {"type": "null"}]
    if "anyOf" in schema and len(branches) == 1:
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        schema = {**branches[0], **rest}
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


# --- operations ------------------------------------------------------------------------------------------


def _path_parameters(path: str) -> list[dict[str, Any]]:
    parameters = []
    if "{session_id}" in path:
        parameters.append(
            {
                "name": "session_id",
                "in": "path",
                "required": True,
                "description": "A session of the caller's project (`ses_` and a lowercase ULID)",
                "schema": {"type": "string", "pattern": SESSION_ID.pattern},
            }
        )
    if "{tool_name}" in path:
        parameters.append(
            {
                "name": "tool_name",
                "in": "path",
                "required": True,
                "description": "A tool name (built-in or the project's catalog)",
                "schema": {"type": "string", "pattern": TOOL_NAME},
            }
        )
    return parameters


def _operation(operation: Operation, schemas: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
    }
    if operation.description:
        document["description"] = operation.description
    document["security"] = {
        ops.API_KEY: [{"ApiKey": []}],
        ops.SESSION: [{"ApiKey": []}, {"SessionToken": []}],
        ops.PUBLIC: [],
    }[operation.auth]
    parameters = _path_parameters(operation.path)
    if operation.query is not None:
        parameters += _query_parameters(operation.query)
    if operation.idempotent:
        parameters.append(
            {
                "name": ops.IDEMPOTENCY_KEY_HEADER,
                "in": "header",
                "required": False,
                "description": (
                    "Makes a retry safe: the same key with the same body within "
                    f"{ops.IDEMPOTENCY_TTL_HOURS} h "
                    "replays the first response instead of doing the work again (scoped to the project)"
                ),
                "schema": {"type": "string", "minLength": 1, "maxLength": ops.IDEMPOTENCY_KEY_MAX_LENGTH},
            }
        )
    if operation.operation_id == "mcp":
        parameters += _mcp_headers()
    if parameters:
        document["parameters"] = parameters
    if operation.body is not None:
        body_schema = schemas[operation.body]
        if operation.example is not None:
            body_schema = {**body_schema, "examples": [operation.example]}
        document["requestBody"] = {
            "required": operation.operation_id not in OPTIONAL_BODIES,
            "content": {JSON: {"schema": body_schema}},
        }
    document["responses"] = _responses(operation, schemas)
    document["x-rate-limit"] = "compute" if operation.compute else "general"
    if operation.idempotent:
        document["x-idempotent"] = True
    if operation.auth == ops.PUBLIC:
        del document["x-rate-limit"]
    return document


OPTIONAL_BODIES = {"createSessionToken", "callTool"}


def _mcp_headers() -> list[dict[str, Any]]:
    from session_service.edges.mcp import SUPPORTED_VERSIONS

    return [
        {
            "name": "MCP-Protocol-Version",
            "in": "header",
            "required": False,
            "description": "The protocol version (none: 2025-03-26)",
            "schema": {"type": "string", "enum": list(SUPPORTED_VERSIONS)},
        },
        {
            "name": "Mcp-Method",
            "in": "header",
            "required": False,
            "description": "2026-07-28: the request's method, repeated",
            "schema": {"type": "string"},
        },
        {
            "name": "Mcp-Name",
            "in": "header",
            "required": False,
            "description": "2026-07-28, tools/call: the tool's name, repeated",
            "schema": {"type": "string"},
        },
    ]


def _error_statuses(operation: Operation) -> list[int]:
    statuses = set(operation.errors)
    has_body = operation.body is not None
    if operation.auth != ops.PUBLIC:
        statuses |= {401, 429, 503}
    else:
        statuses.add(429)  # no limiter of ours, but the stage's throttling covers every route
    if "{" in operation.path:
        statuses.add(404)
    if has_body:
        statuses |= {400, 413, 422}
    if operation.query is not None or operation.operation_id == "putTool":
        statuses.add(422)
    if operation.idempotent:
        statuses |= {409, 422}
    if operation.operation_id == "mcp":
        statuses.discard(422)  # JSON-RPC errors instead
    return sorted(statuses)


def _ref(kind: Any) -> dict[str, str]:
    return {"$ref": COMPONENTS.format(model=kind.__name__)}


def _error_schema(operation: Operation, status: int) -> dict[str, Any]:
    if operation.auth == ops.PUBLIC and status == 429:
        return _ref(responses.GatewayError)
    gateway_too = status in (401, 404, 413, 429, 503)
    if operation.tag == "mcp" and status not in (429, 503):
        kinds: list[Any] = [responses.JsonRpcResponse]
        if status in (404, 413):
            kinds.append(responses.GatewayError)
    else:
        kinds = [responses.Error, responses.GatewayError] if gateway_too else [responses.Error]
    if operation.tag == "mcp" and status == 429:
        kinds.append(responses.JsonRpcResponse)
    refs = [_ref(kind) for kind in kinds]
    return refs[0] if len(refs) == 1 else {"anyOf": refs}


def _responses(operation: Operation, schemas: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    documented: dict[str, Any] = {}
    for status, kind in sorted(operation.responses.items()):
        response: dict[str, Any] = {"description": _success_description(operation, status)}
        if kind is not None:
            response["content"] = {JSON: {"schema": schemas[kind]}}
        headers: dict[str, Any] = {}
        if operation.auth != ops.PUBLIC:
            headers.update(_rate_limit_headers(on_success=True))
        if operation.idempotent:
            headers[ops.IDEMPOTENT_REPLAYED_HEADER] = {
                "description": "Present on a replayed response (the same Idempotency-Key and body)",
                "schema": {"type": "string", "enum": ["true"]},
            }
        if headers:
            response["headers"] = headers
        links = operation.links.get(status)
        if links:
            response["links"] = {
                target: {"operationId": target, "parameters": parameters}
                for target, parameters in links.items()
            }
        documented[str(status)] = response
    for status in _error_statuses(operation):
        response = {
            "description": _error_description(operation, status),
            "content": {JSON: {"schema": _error_schema(operation, status)}},
        }
        if status == 429 and operation.auth != ops.PUBLIC:
            response["headers"] = _rate_limit_headers()
        documented[str(status)] = response
    return documented


def _success_description(operation: Operation, status: int) -> str:
    if operation.operation_id == "mcp":
        return "A JSON-RPC response" if status == 200 else "A notification or a response: accepted, no body"
    if len(operation.responses) > 1:
        return {201: "Created", 200: "Already there: the existing resource"}.get(status, "OK")
    return "OK"


def _error_description(operation: Operation, status: int) -> str:
    if operation.auth == ops.PUBLIC and status == 429:
        return PUBLIC_THROTTLED
    return ERROR_CODES[status] + _limit_note(operation, status)


def _limit_note(operation: Operation, status: int) -> str:
    if status != 413 or operation.body is None:
        return ""
    limit = MAX_MESSAGE_BODY_BYTES if operation.operation_id == "appendMessage" else MAX_BODY_BYTES
    return f" ({limit} bytes)"


def _rate_limit_headers(*, on_success: bool = False) -> dict[str, Any]:
    described = {
        "Retry-After": "Seconds until a request can succeed",
        "RateLimit-Limit": "The size of the bucket that bound this request (requests a minute)",
        "RateLimit-Remaining": "Requests left in that bucket" + ("" if on_success else " (0 here)"),
        "RateLimit-Reset": "Seconds until that bucket is full again",
    }
    assert tuple(described) == ops.RATE_LIMIT_HEADERS
    absent = (
        "the limiter was unreachable (it fails open)"
        if on_success
        else "API Gateway's stage throttling answered"
    )
    return {
        name: {"description": f"{text} (absent when {absent})", "schema": {"type": "integer", "minimum": 0}}
        for name, text in described.items()
        if not (on_success and name == "Retry-After")
    }


# --- the files -------------------------------------------------------------------------------------------


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the document to each path given (make openapi: docs/openapi.json and the function's copy)."""
    paths = [Path(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    text = render()
    if not paths:
        sys.stdout.write(text)
    for path in paths:
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
