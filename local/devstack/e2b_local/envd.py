"""The in-sandbox half of the local E2B API: envd's process service as Connect RPC with the JSON codec.

Streams are enveloped (1 flag byte, 4-byte big-endian length, JSON) and sent with chunked transfer encoding,
so the SDK sees output as the command produces it. Like the real envd, a command is killed when the
`Connect-Timeout-Ms` deadline passes, NOT when the client goes away: a disconnected (or `disconnect()`-ed)
command keeps running, its output drained and dropped, until it exits or its sandbox is paused or killed.
"""

from __future__ import annotations

import base64
import json
import queue
import signal
import struct
import time
from typing import Any, Protocol

from devstack.e2b_local.process import Abort, RunningProcess, end_event
from devstack.e2b_local.state import Registry, RpcError, Sandbox

ENVD_PORT = "49983"
STREAM_CONTENT_TYPE = "application/connect+json"
UNARY_CONTENT_TYPE = "application/json"
FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02
POLL_SECONDS = 0.05  # how often a quiet stream checks its deadline, keepalive and client
DEADLINE_ABORT = Abort("deadline_exceeded", "the command's timeout passed; it was killed")

# Connect's HTTP status for each error code (https://connectrpc.com/docs/protocol#error-codes).
_HTTP_STATUS = {
    "canceled": 499,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}
_SIGNALS = {
    "SIGNAL_SIGKILL": signal.SIGKILL,
    9: signal.SIGKILL,
    "SIGNAL_SIGTERM": signal.SIGTERM,
    15: signal.SIGTERM,
}


class Exchange(Protocol):
    """What the envd handlers need from the HTTP layer."""

    def header(self, name: str) -> str | None: ...

    def send_json(self, status: int, body: Any, content_type: str = UNARY_CONTENT_TYPE) -> None: ...

    def start_chunked(self, content_type: str) -> None: ...

    def write_chunk(self, data: bytes) -> bool: ...

    def finish_chunked(self) -> None: ...

    def client_gone(self) -> bool: ...


def envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    payload = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">BI", flags, len(payload)) + payload


def unwrap(body: bytes) -> dict[str, Any]:
    """The single request message of a server-streaming call."""
    if len(body) < 5:
        raise RpcError("invalid_argument", "missing request envelope")
    flags, length = struct.unpack(">BI", body[:5])
    if flags & FLAG_COMPRESSED:
        raise RpcError("unimplemented", "compressed messages are not supported")
    return _json_object(body[5 : 5 + length])


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        message = json.loads(data or b"{}")
    except ValueError as error:
        raise RpcError("invalid_argument", f"invalid JSON message: {error}") from error
    if not isinstance(message, dict):
        raise RpcError("invalid_argument", "the message must be a JSON object")
    return message


def dispatch(exchange: Exchange, registry: Registry, sandbox: Sandbox, path: str, body: bytes) -> None:
    if path == "/process.Process/Start":
        _start(exchange, registry, sandbox, body)
        return
    try:
        processes = registry.processes(sandbox)
        if path == "/process.Process/List":
            reply = _list(processes)
        elif path == "/process.Process/SendSignal":
            reply = _send_signal(processes, _json_object(body))
        else:
            raise RpcError("unimplemented", f"{path} is not implemented by the local E2B API")
    except RpcError as error:
        exchange.send_json(_HTTP_STATUS.get(error.code, 500), {"code": error.code, "message": error.message})
        return
    exchange.send_json(200, reply)


def _list(processes: dict[int, RunningProcess]) -> dict[str, Any]:
    infos = []
    for pid, process in sorted(processes.items()):
        info: dict[str, Any] = {"config": process.config, "pid": pid}
        if process.tag:
            info["tag"] = process.tag
        infos.append(info)
    return {"processes": infos}


def _find(processes: dict[int, RunningProcess], selector: Any) -> RunningProcess:
    if isinstance(selector, dict) and "pid" in selector:
        process = processes.get(int(selector["pid"]))
        if process is not None:
            return process
        raise RpcError("not_found", f"process with pid {selector['pid']} not found")
    if isinstance(selector, dict) and "tag" in selector:
        for process in processes.values():
            if process.tag == selector["tag"]:
                return process
        raise RpcError("not_found", f"process with tag {selector['tag']} not found")
    raise RpcError("invalid_argument", "a process selector (pid or tag) is required")


def _send_signal(processes: dict[int, RunningProcess], request: dict[str, Any]) -> dict[str, Any]:
    process = _find(processes, request.get("process"))
    signum = _SIGNALS.get(request.get("signal", "SIGNAL_UNSPECIFIED"))
    if signum is None:
        raise RpcError("unimplemented", f"invalid signal: {request.get('signal')}")
    process.send_signal(signum)
    return {}


def _start(exchange: Exchange, registry: Registry, sandbox: Sandbox, body: bytes) -> None:
    """Process.Start: start event, data events as output arrives, end event, end-of-stream."""
    try:
        request = unwrap(body)
        if request.get("pty"):
            raise RpcError("unimplemented", "PTY is not emulated by the local E2B API")
        config = request.get("process") or {}
        cmd, args, envs = config.get("cmd"), config.get("args") or [], config.get("envs") or {}
        if not isinstance(cmd, str) or not cmd:
            raise RpcError("invalid_argument", "process.cmd is required")
        if not all(isinstance(arg, str) for arg in args) or not isinstance(envs, dict):
            raise RpcError("invalid_argument", "process.args must be strings and process.envs an object")
        deadline = _deadline(exchange.header("Connect-Timeout-Ms"))
        process = registry.spawn(
            sandbox, [cmd, *args], config.get("cwd"), {str(k): str(v) for k, v in envs.items()}
        )
    except RpcError as error:
        exchange.start_chunked(STREAM_CONTENT_TYPE)
        _end_stream(exchange, Abort(error.code, error.message))
        return
    process.tag = request.get("tag")
    keepalive = _seconds(exchange.header("Keepalive-Ping-Interval"))
    exchange.start_chunked(STREAM_CONTENT_TYPE)
    connected = exchange.write_chunk(envelope({"event": {"start": {"pid": process.pid}}}))
    last_sent = time.monotonic()
    try:
        while True:
            try:
                item = process.events.get(timeout=POLL_SECONDS)
            except queue.Empty:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    process.kill(DEADLINE_ABORT)
                if connected and exchange.client_gone():
                    connected = False
                if connected and keepalive and now - last_sent >= keepalive:
                    connected = exchange.write_chunk(envelope({"event": {"keepalive": {}}}))
                    last_sent = now
                continue
            if item is None:
                break
            if connected:
                name, chunk = item
                data = {name: base64.b64encode(chunk).decode()}
                connected = exchange.write_chunk(envelope({"event": {"data": data}}))
                last_sent = time.monotonic()
        returncode = _exit_status(process, deadline)
    finally:
        registry.forget(sandbox, process)
    if not connected:
        return
    if process.abort is not None:
        _end_stream(exchange, process.abort)
        return
    if exchange.write_chunk(envelope({"event": {"end": end_event(returncode)}})):
        _end_stream(exchange, None)


def _exit_status(process: RunningProcess, deadline: float | None) -> int:
    """The command's exit status once its output has closed (it may close its output and run on: the
    deadline still applies). The leader is not reaped here: see `Registry.forget`."""
    while (status := process.wait_exit(POLL_SECONDS)) is None:
        if deadline is not None and time.monotonic() >= deadline:
            process.kill(DEADLINE_ABORT)
    return status


def _end_stream(exchange: Exchange, error: Abort | None) -> None:
    message: dict[str, Any] = (
        {} if error is None else {"error": {"code": error.code, "message": error.message}}
    )
    if exchange.write_chunk(envelope(message, FLAG_END_STREAM)):
        exchange.finish_chunked()


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds and seconds > 0 else None


def _deadline(timeout_ms: str | None) -> float | None:
    if not timeout_ms:
        return None
    try:
        milliseconds = int(timeout_ms)
    except ValueError as error:
        raise RpcError("invalid_argument", f"invalid Connect-Timeout-Ms: {timeout_ms!r}") from error
    return time.monotonic() + milliseconds / 1000 if milliseconds > 0 else None
