"""JSON Schema for tools: a tool's input_schema must be a valid schema (Draft 2020-12, the dialect MCP
uses) describing an object, and a call's arguments must satisfy it.

The `jsonschema` library (the reference implementation) costs about 62 ms to import, so it is imported on
the first use, by the functions that validate (PUT a tool, call a tool, MCP), never by the others.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MAX_ERRORS = 20


def _validator_class() -> Any:
    from jsonschema.validators import Draft202012Validator

    return Draft202012Validator


def schema_problems(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Why `schema` cannot be a tool's input schema (empty when it can)."""
    from jsonschema.exceptions import SchemaError

    try:
        _validator_class().check_schema(schema)
    except SchemaError as error:
        where = ["body", "input_schema", *[str(part) for part in error.path]]
        return [{"loc": where, "msg": error.message, "type": "json_schema"}]
    if schema.get("type") != "object":
        return [{"loc": ["body", "input_schema", "type"], "msg": 'must be "object"', "type": "json_schema"}]
    return []


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Any:
    import json

    return _validator_class()(json.loads(schema_json))


def argument_problems(schema: dict[str, Any], arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Where `arguments` break `schema`, as validation details (empty when they satisfy it)."""
    import json

    validator = _validator(json.dumps(schema, sort_keys=True))
    problems = []
    for error in sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path))[:MAX_ERRORS]:
        where = ["body", "arguments", *[str(part) for part in error.absolute_path]]
        problems.append({"loc": where, "msg": error.message, "type": f"json_schema.{error.validator}"})
    return problems
