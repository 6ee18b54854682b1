"""One Lambda execution environment: `python -m devstack.worker CODE_URI HANDLER IN_FD OUT_FD`.

It imports the handler once (the init phase, i.e. the cold start), then serves one invocation at a time:
events arrive on IN_FD and results leave on OUT_FD as length-prefixed JSON frames. Frames use their own
pipes, not stdin/stdout, because the handler's stdout is its log (Powertools writes JSON log lines there),
as on Lambda. EOF on IN_FD means the dev stack is gone or stopping: the worker exits.

This module imports nothing heavy, so the worker's start-up cost is the function's own imports.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import sys
import time
import traceback
from dataclasses import dataclass
from typing import IO, Any

from devstack.limits import response_too_large

FRAME_HEADER = struct.Struct(">I")


def write_frame(stream: IO[bytes], message: Any) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    stream.write(FRAME_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any | None:
    """The next message, or None at EOF."""
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (length,) = FRAME_HEADER.unpack(header)
    data = stream.read(length)
    if len(data) < length:
        return None
    return json.loads(data)


def encode_frame(message: Any) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return FRAME_HEADER.pack(len(data)) + data


@dataclass
class LambdaContext:
    """The context object a Python handler receives (the fields Powertools and handlers read)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline_ms: int  # epoch milliseconds, as the Lambda runtime API's Lambda-Runtime-Deadline-Ms
    identity: Any = None
    client_context: Any = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - int(time.time() * 1000))


def error_payload(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """An unhandled exception the way the Lambda Python runtime reports it."""
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def load_handler(code_uri: str, handler: str) -> Any:
    """Import `module.function` from the task root, which (as on Lambda) is the working directory and the
    first entry of sys.path, so the function's sibling modules import as they do in the cloud."""
    module_name, _, function_name = handler.rpartition(".")
    os.chdir(code_uri)
    sys.path.insert(0, code_uri)
    module = importlib.import_module(module_name.replace("/", "."))
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise AttributeError(f"Handler '{function_name}' missing on module '{module_name}'") from None


def serve(code_uri: str, handler: str, requests: IO[bytes], responses: IO[bytes]) -> int:
    started = time.perf_counter()
    try:
        function = load_handler(code_uri, handler)
    except Exception as error:
        module = handler.rpartition(".")[0]
        kind = "Runtime.HandlerNotFound" if isinstance(error, AttributeError) else "Runtime.ImportModuleError"
        payload = error_payload(error, kind)
        if kind == "Runtime.ImportModuleError":
            payload["errorMessage"] = f"Unable to import module '{module}': {error}"
        write_frame(responses, {"type": "init_error", "error": payload})
        return 1
    write_frame(responses, {"type": "ready", "init_ms": (time.perf_counter() - started) * 1000})
    while True:
        request = read_frame(requests)
        if request is None:
            return 0
        context = LambdaContext(**request["context"])
        try:
            result = function(request["event"], context)
            too_large = response_too_large(result)
            reply = (
                {"type": "error", "error": too_large} if too_large else {"type": "result", "result": result}
            )
        except Exception as error:
            reply = {"type": "error", "error": error_payload(error)}
        sys.stdout.flush()
        try:
            frame = encode_frame(reply)
        except (TypeError, ValueError) as error:
            frame = encode_frame({"type": "error", "error": error_payload(error, "Runtime.MarshalError")})
        responses.write(frame)
        responses.flush()


def main(argv: list[str] | None = None) -> int:
    code_uri, handler, in_fd, out_fd = argv if argv is not None else sys.argv[1:]
    with os.fdopen(int(in_fd), "rb") as requests, os.fdopen(int(out_fd), "wb") as responses:
        return serve(code_uri, handler, requests, responses)


if __name__ == "__main__":
    sys.exit(main())
