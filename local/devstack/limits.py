"""The cloud's limits that the dev stack enforces, each in one place with its source, so that what fails in
the cloud fails here too.

- LAMBDA_RESPONSE_BYTES: a synchronous invocation's response, measured on the JSON of the handler's return
  value (AWS Lambda quotas: "6 MB" for synchronous invocation payloads; the exact figure, 6,291,556 bytes,
  is the one Lambda's own error message gives). Over it, Lambda fails the invocation with
  Function.ResponseSizeTooLarge and an HTTP API answers 500.
- HTTP_API_REQUEST_BYTES: an HTTP API request's payload (API Gateway quotas, HTTP APIs: 10 MB); 413.
- WEBSOCKET_MESSAGE_BYTES: a WebSocket API message (API Gateway quotas, WebSocket APIs: 128 KB).
- SQS message size: the queue's MaximumMessageSize (template.yaml sets 256 KiB on its queues; SQS allows
  up to 1 MiB); moto refuses larger bodies with InvalidParameterValue, as SQS does.
"""

from __future__ import annotations

import json
from typing import Any

LAMBDA_RESPONSE_BYTES = 6_291_556
HTTP_API_REQUEST_BYTES = 10 * 1024 * 1024
WEBSOCKET_MESSAGE_BYTES = 128 * 1024


def response_too_large(result: Any) -> dict[str, Any] | None:
    """Lambda's error payload when a synchronous response is over the limit, else None."""
    try:
        size = len(json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode())
    except (TypeError, ValueError):
        return None  # not JSON at all: the runtime reports that itself (Runtime.MarshalError)
    if size <= LAMBDA_RESPONSE_BYTES:
        return None
    return {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed payload size "
        f"({LAMBDA_RESPONSE_BYTES} bytes).",
    }
