"""The in-sandbox half of the local E2B API: envd's process and filesystem services as Connect RPC with the
JSON codec (the HTTP `/files` API is in `files.py`).

Streams are enveloped (1 flag byte, 4-byte big-endian length, JSON) and sent with chunked transfer encoding,
so the SDK sees output as the command produces it. Like the real envd, a command is killed when the
`Connect-Timeout-Ms` deadline of its Start passes, NOT when the client goes away: a disconnected (or
`disconnect()`-ed) command keeps running, its output dropped while nobody is connected, until it exits or its
sandbox is paused or killed. `Connect` subscribes another stream to a running command: the start event, then
the output produced from then on, then the end. Its own deadline ends only that stream.
"""

from __future__ import annotations

import base64
import binascii
import json
import signal
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol

from devstack.e2b_local.fs import HOME, USER
from devstack.e2b_local.process import DEADLINE_ABORT, Abort, Ending, RunningProcess, Subscription, end_event
from devstack.e2b_local.state import Registry, RpcError, Sandbox

ENVD_PORT = "49983"
STREAM_CONTENT_TYPE = "application/connect+json"
UNARY_CONTENT_TYPE = "application/json"
FLAG_COMPRESSED = 0x01
FLAG_END_STREAM = 0x02
POLL_SECONDS = 0.05  # how often a quiet stream checks its deadline, keepalive and client
STREAM_DEADLINE_ABORT = Abort("deadline_exceeded", "the stream's timeout passed; the command runs on")
# The sandbox's users: the template's default user and root, with their homes (the SDK sends a user only
# when the caller passes `user=`).
HOMES = {USER: HOME, "root": "/root"}

# Connect's HTTP status for each error code (https://connectrpc.com/docs/protocol#error-codes).
HTTP_STATUS = {
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
    if path in _STREAMS:
        _STREAMS[path](exchange, registry, sandbox, body)
        return
    try:
        handler = _UNARY.get(path)
        if handler is None:
            raise RpcError("unimplemented", f"{path} is not implemented by the local E2B API")
        reply = handler(Call(registry, sandbox, _json_object(body), exchange.header("Authorization")))
    except RpcError as error:
        exchange.send_json(HTTP_STATUS.get(error.code, 500), {"code": error.code, "message": error.message})
        return
    exchange.send_json(200, reply)


class Call:
    """One unary RPC: its request message and who it is for."""

    def __init__(
        self, registry: Registry, sandbox: Sandbox, request: dict[str, Any], authorization: str | None
    ) -> None:
        self.registry = registry
        self.sandbox = sandbox
        self.request = request
        self.user, self.home = rpc_user(authorization)

    def path(self, name: str = "path") -> str:
        value = self.request.get(name, "")
        if not isinstance(value, str):
            raise RpcError("invalid_argument", f"{name} must be a string")
        return value

    def process(self) -> RunningProcess:
        return _find(self.registry.processes(self.sandbox), self.request.get("process"))


def rpc_user(authorization: str | None) -> tuple[str, str]:
    """The user an RPC acts as: `Authorization: Basic base64("<user>:")` when the caller passed `user=`,
    else the default user (what envd >= 0.4.0 does). Unknown users are refused, as envd refuses them."""
    if not authorization:
        return USER, HOME
    scheme, _, encoded = authorization.partition(" ")
    try:
        if scheme.lower() != "basic":
            raise ValueError(scheme)
        name = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[0]
    except (ValueError, binascii.Error) as error:
        raise RpcError("unauthenticated", "invalid Authorization header") from error
    return known_user(name, lambda message: RpcError("unauthenticated", message))


def known_user(name: str, refuse: Callable[[str], Exception]) -> tuple[str, str]:
    name = name or USER
    if name not in HOMES:
        raise refuse(f"error looking up user '{name}': user: unknown user {name}")
    return name, HOMES[name]


# -- filesystem.Filesystem ---------------------------------------------------------------------------------


def _stat(call: Call) -> dict[str, Any]:
    return {"entry": call.sandbox.fs.stat(call.path(), call.home)}


def _list_dir(call: Call) -> dict[str, Any]:
    depth = call.request.get("depth") or 0
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise RpcError("invalid_argument", "depth must be a non-negative integer")
    return {"entries": call.sandbox.fs.list_dir(call.path(), depth, call.home)}


def _make_dir(call: Call) -> dict[str, Any]:
    return {"entry": call.sandbox.fs.make_dir(call.path(), call.home)}


def _remove(call: Call) -> dict[str, Any]:
    call.sandbox.fs.remove(call.path(), call.home)
    return {}


def _move(call: Call) -> dict[str, Any]:
    return {"entry": call.sandbox.fs.move(call.path("source"), call.path("destination"), call.home)}


# -- process.Process (unary) -------------------------------------------------------------------------------


def _list(call: Call) -> dict[str, Any]:
    infos = []
    for pid, process in sorted(call.registry.processes(call.sandbox).items()):
        info: dict[str, Any] = {"config": process.config, "pid": pid}
        if process.tag:
            info["tag"] = process.tag
        infos.append(info)
    return {"processes": infos}


def _find(processes: dict[int, RunningProcess], selector: Any) -> RunningProcess:
    if isinstance(selector, dict) and "pid" in selector:
        process = processes.get(_pid(selector["pid"]))
        if process is not None:
            return process
        raise RpcError("not_found", f"process with pid {selector['pid']} not found")
    if isinstance(selector, dict) and "tag" in selector:
        for process in processes.values():
            if process.tag == selector["tag"]:
                return process
        raise RpcError("not_found", f"process with tag {selector['tag']} not found")
    raise RpcError("invalid_argument", "a process selector (pid or tag) is required")


def _pid(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise RpcError("invalid_argument", f"invalid pid: {value!r}") from error


def _send_signal(call: Call) -> dict[str, Any]:
    process = call.process()
    signum = _SIGNALS.get(call.request.get("signal", "SIGNAL_UNSPECIFIED"))
    if signum is None:
        raise RpcError("unimplemented", f"invalid signal: {call.request.get('signal')}")
    process.send_signal(signum)
    return {}


def _send_input(call: Call) -> dict[str, Any]:
    process = call.process()
    given = call.request.get("input") or {}
    if not isinstance(given, dict) or not ({"stdin", "pty"} & given.keys()):
        raise RpcError("unimplemented", "invalid input type")
    if "pty" in given:
        raise RpcError("internal", "error writing to tty: tty not assigned to process")
    try:
        process.write_stdin(base64.b64decode(given["stdin"] or ""))
    except (binascii.Error, TypeError) as error:
        raise RpcError("invalid_argument", f"input.stdin must be base64: {error}") from error
    except (ValueError, OSError) as error:
        raise RpcError("internal", f"error writing to stdin: {error}") from error
    return {}


def _close_stdin(call: Call) -> dict[str, Any]:
    try:
        call.process().close_stdin()
    except OSError as error:
        raise RpcError("unknown", f"error closing stdin: {error}") from error
    return {}


_UNARY: dict[str, Callable[[Call], dict[str, Any]]] = {
    "/filesystem.Filesystem/Stat": _stat,
    "/filesystem.Filesystem/ListDir": _list_dir,
    "/filesystem.Filesystem/MakeDir": _make_dir,
    "/filesystem.Filesystem/Remove": _remove,
    "/filesystem.Filesystem/Move": _move,
    "/process.Process/List": _list,
    "/process.Process/SendSignal": _send_signal,
    "/process.Process/SendInput": _send_input,
    "/process.Process/CloseStdin": _close_stdin,
}


# -- process.Process (server streams) ----------------------------------------------------------------------


def _start(exchange: Exchange, registry: Registry, sandbox: Sandbox, body: bytes) -> None:
    """Process.Start: start event (flushed at once: `background=True` returns on it), data events as output
    arrives, end event, end-of-stream. The command's deadline is its own (its supervisor kills it)."""
    try:
        request = unwrap(body)
        if request.get("pty"):
            raise RpcError("unimplemented", "PTY is not emulated by the local E2B API")
        user, home = rpc_user(exchange.header("Authorization"))
        stdin = request.get("stdin")
        tag = request.get("tag")
        process, subscription = registry.spawn(
            sandbox,
            _process_config(request.get("process")),
            user=user,
            home=home,
            stdin=stdin is None or stdin is True,  # envd: a stdin pipe unless explicitly disabled
            tag=tag if isinstance(tag, str) else None,
            deadline=_deadline(exchange.header("Connect-Timeout-Ms")),
        )
    except RpcError as error:
        exchange.start_chunked(STREAM_CONTENT_TYPE)
        _end_stream(exchange, Abort(error.code, error.message))
        return
    _stream(exchange, process, subscription, deadline=None, own_command=True)


def _connect(exchange: Exchange, registry: Registry, sandbox: Sandbox, body: bytes) -> None:
    """Process.Connect: the start event, the output from now on and the end of a running command; for one
    that ended in the last RETAIN_EXIT_SECONDS, its start and end at once (as envd serves a late Connect)."""
    try:
        request = unwrap(body)
        deadline = _deadline(exchange.header("Connect-Timeout-Ms"))
        selector = request.get("process")
        try:
            process = _find(registry.processes(sandbox), selector)
        except RpcError as error:
            retained = _retained(registry, sandbox, selector) if error.code == "not_found" else None
            if retained is None:
                raise
            exchange.start_chunked(STREAM_CONTENT_TYPE)
            pid, ending = retained
            start = envelope({"event": {"start": {"pid": pid}}})
            if exchange.write_chunk(start) and exchange.write_chunk(_end_envelope(ending)):
                _end_stream(exchange, None)
            return
        subscription = process.subscribe()
    except RpcError as error:
        exchange.start_chunked(STREAM_CONTENT_TYPE)
        _end_stream(exchange, Abort(error.code, error.message))
        return
    _stream(exchange, process, subscription, deadline=deadline, own_command=False)


def _retained(registry: Registry, sandbox: Sandbox, selector: Any) -> tuple[int, Ending] | None:
    if not isinstance(selector, dict):
        return None
    pid = _pid(selector["pid"]) if "pid" in selector else None
    tag = selector.get("tag") if isinstance(selector.get("tag"), str) else None
    return registry.find_exited(sandbox, pid, tag)


def _stream(
    exchange: Exchange,
    process: RunningProcess,
    subscription: Subscription,
    *,
    deadline: float | None,
    own_command: bool,
) -> None:
    """Write one subscription out as a process event stream until the command ends, the stream's own
    deadline passes (Connect) or the client goes away; the command itself is not touched by any of it.
    A command killed by its deadline ends its Start stream with `deadline_exceeded` and a Connect stream
    with the end event (signal: killed), as in envd."""
    keepalive = _seconds(exchange.header("Keepalive-Ping-Interval"))
    try:
        exchange.start_chunked(STREAM_CONTENT_TYPE)
        if not exchange.write_chunk(envelope({"event": {"start": {"pid": process.pid}}})):
            return
        last_sent = time.monotonic()
        while True:
            item = subscription.next(POLL_SECONDS)
            if item is None:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    _end_stream(exchange, STREAM_DEADLINE_ABORT)
                    return
                if exchange.client_gone():
                    return
                if keepalive and now - last_sent >= keepalive:
                    if not exchange.write_chunk(envelope({"event": {"keepalive": {}}})):
                        return
                    last_sent = now
                continue
            if isinstance(item, Ending):
                abort = item.abort
                if abort is not None and not (abort is DEADLINE_ABORT and not own_command):
                    _end_stream(exchange, abort)
                elif exchange.write_chunk(_end_envelope(item)):
                    _end_stream(exchange, None)
                return
            name, chunk = item
            if not exchange.write_chunk(
                envelope({"event": {"data": {name: base64.b64encode(chunk).decode()}}})
            ):
                return
            last_sent = time.monotonic()
    finally:
        process.unsubscribe(subscription)


_STREAMS: dict[str, Callable[[Exchange, Registry, Sandbox, bytes], None]] = {
    "/process.Process/Start": _start,
    "/process.Process/Connect": _connect,
}


def _process_config(config: Any) -> dict[str, Any]:
    """The ProcessConfig as the client sent it (envd's List reports it so): cmd, args, envs, cwd if given."""
    if not isinstance(config, dict):
        raise RpcError("invalid_argument", "process is required")
    cmd, args, envs, cwd = (
        config.get("cmd"),
        config.get("args") or [],
        config.get("envs") or {},
        config.get("cwd"),
    )
    if not isinstance(cmd, str) or not cmd:
        raise RpcError("invalid_argument", "process.cmd is required")
    if (
        not isinstance(args, list)
        or not all(isinstance(arg, str) for arg in args)
        or not isinstance(envs, dict)
    ):
        raise RpcError("invalid_argument", "process.args must be strings and process.envs an object")
    if cwd is not None and not isinstance(cwd, str):
        raise RpcError("invalid_argument", "process.cwd must be a string")
    checked: dict[str, Any] = {
        "cmd": cmd,
        "args": list(args),
        "envs": {str(k): str(v) for k, v in envs.items()},
    }
    if cwd:
        checked["cwd"] = cwd
    return checked


def _end_envelope(ending: Ending) -> bytes:
    return envelope({"event": {"end": end_event(ending.returncode)}})


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
