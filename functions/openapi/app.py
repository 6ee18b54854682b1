"""GET /openapi.json (no authorizer): the API's OpenAPI 3.1 document, generated from the code by `make
openapi` (session_service.edges.openapi) and packaged beside this file. Read once per container; the module
imports nothing but the standard library, so a cold start costs a file read."""

from pathlib import Path
from typing import Any

DOCUMENT = (Path(__file__).parent / "openapi.json").read_text()
HEADERS = {"content-type": "application/json", "cache-control": "public, max-age=300"}


def handler(event: dict, context: Any) -> dict:
    return {"statusCode": 200, "headers": HEADERS, "body": DOCUMENT}
