"""A local E2B-compatible API for development and tests: stdlib HTTP/1.1, loopback only, never deployed.

One port serves both halves, as `E2B_API_URL` and `E2B_SANDBOX_URL` may point at the same place: requests
carrying `E2b-Sandbox-Id`/`E2b-Sandbox-Port` go to the envd emulation, everything else is control plane.
Under `/_local/`, a path real E2B never uses, is the double's own control API (faults, latency, a snapshot of
the sandboxes), for a server running as a process of its own.
It is a development double, not a security boundary: "sandbox" commands are host subprocesses.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import math
import re
import select
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from devstack.e2b_local import envd, files
from devstack.e2b_local.state import (
    DEFAULT_TIMEOUT,
    PAUSED,
    STATES,
    ApiError,
    Registry,
    check_str_map,
    check_timeout,
)
from devstack.httpserver import StoppableHTTPServer

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "e2b_local_dev_key"
MAX_PAGE = 100  # the real API's maximum (and default) page size
MAX_BODY = 16 * 1024 * 1024
READ_CHUNK = 64 * 1024  # uploads and downloads move in pieces this big
LOCAL_PREFIX = "/_local/"  # the double's own control API: a path real E2B never uses


@dataclass
class Fault:
    method: str
    path_prefix: str
    status: int
    remaining: int
    retry_after: float | None


@dataclass
class Latency:
    method: str
    path_prefix: str
    seconds: float
    remaining: int | None  # None: every matching request until reset


class LocalE2B:
    """The local E2B API. Start it, point the SDK at `url`, and inspect or perturb it from tests."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        reaper_interval: float = 0.2,
        root: Path | None = None,
    ) -> None:
        """With `api_key=None` any non-empty X-API-KEY is accepted; with a key, only that key."""
        if not _is_loopback(host):
            raise ValueError(
                f"the local E2B API binds loopback only, not {host!r}: it runs commands on this host"
            )
        self.host = host
        self.port = port
        self.api_key = api_key or DEFAULT_API_KEY
        self._strict_key = api_key is not None
        self.reaper_interval = reaper_interval
        self._root = root or Path(tempfile.mkdtemp(prefix="e2b-local-"))
        self._own_root = root is None
        self.registry = Registry(self._root)
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._latencies: list[Latency] = []
        self._log: list[tuple[str, str, int]] = []
        self._page_limit = MAX_PAGE
        self._server: _Server | None = None
        self._reaper: threading.Thread | None = None
        self._closing = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalE2B:
        """Serve in the background (idempotent); the timeout reaper starts with the first call."""
        if self._server is None:
            self._serve()
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap_forever, name="e2b-local-reaper", daemon=True)
            self._reaper.start()
        return self

    def stop(self) -> None:
        """Refuse connections, and cut the open ones, to look like E2B being unreachable; state is kept.

        Bounded: no handler thread is waited for (a stream, or a half-sent request, can hold one for
        ever); cutting its connection makes it end on its own.
        """
        server, self._server = self._server, None
        if server is not None:
            server.stopping.set()  # requests held by injected latency give up without an effect
            server.shutdown()  # returns within poll_interval: the serve loop only accepts
            server.server_close()
            server.close_connections()

    def restart(self) -> LocalE2B:
        """Serve again on the same port with the same sandboxes."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Kill every sandbox's process groups, stop serving and the reaper, delete the directories.

        Sandboxes go first: a stream's handler thread waits for its command, so nothing may wait for those
        threads before the commands are dead. The registry then refuses anything new (a request already in
        flight cannot start a command after this). Bounded; safe to call twice.
        """
        self._closing.set()
        self.registry.close()
        self.stop()
        if self._reaper is not None:
            self._reaper.join(timeout=1)
        if self._own_root:
            shutil.rmtree(self._root, ignore_errors=True)

    def __enter__(self) -> LocalE2B:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _serve(self) -> None:
        server = _Server((self.host, self.port), self)
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="e2b-local-http", daemon=True
        ).start()

    def _reap_forever(self) -> None:
        while not self._closing.wait(self.reaper_interval):
            try:
                self.registry.reap()
            except Exception:  # the reaper must outlive one bad pass
                log.exception("e2b_local reaper pass failed")

    # -- test controls -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Drop all sandboxes (killing their commands), faults, latencies, the request log, the page limit."""
        self.registry.reset()
        self.reset_faults()
        with self._lock:
            self._log.clear()
            self._page_limit = MAX_PAGE

    def reset_faults(self) -> None:
        """Drop injected faults and latencies only; sandboxes and the request log stay."""
        with self._lock:
            self._faults.clear()
            self._latencies.clear()

    def sandboxes(
        self, metadata: dict[str, str] | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """A snapshot, oldest first: sandbox_id, state, metadata, template_id, env_vars, end_at, workdir..."""
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        return self.registry.snapshots(metadata=metadata, states=(state,) if state else STATES)

    def expire(self, sandbox_id: str) -> None:
        """Act as if the sandbox's timeout passed now (pause or kill, per its lifecycle), without waiting."""
        self.registry.expire(sandbox_id)

    def inject(
        self, method: str, path_prefix: str, status: int, times: int = 1, retry_after: float | None = None
    ) -> None:
        """Fail the next `times` matching requests (method "*" is any) with `status`, before any effect."""
        if times < 1 or not 400 <= status <= 599:
            raise ValueError("inject needs times >= 1 and an error status (400-599)")
        with self._lock:
            self._faults.append(Fault(method.upper(), path_prefix, status, times, retry_after))

    def inject_latency(self, method: str, path_prefix: str, seconds: float, times: int | None = None) -> None:
        """Hold matching requests (method "*" is any) for `seconds` before they have any effect: the next
        `times` of them, or every one until `reset()` / `reset_faults()` (times=None). A request can be both
        delayed and failed by `inject`; the delay comes first. Stopping the server ends the wait, and the
        request then has no effect and gets no answer, as if it had never arrived."""
        if not math.isfinite(seconds) or seconds < 0 or (times is not None and times < 1):
            raise ValueError("inject_latency needs seconds >= 0 and times >= 1 (or None for every request)")
        with self._lock:
            self._latencies.append(Latency(method.upper(), path_prefix, seconds, times))

    @property
    def request_log(self) -> list[tuple[str, str, int]]:
        """(method, path without query, status) of every request since the last reset; status 0: no answer."""
        with self._lock:
            return list(self._log)

    def set_page_limit(self, limit: int) -> None:
        """Cap list pages below the API's 100, to exercise paging without creating hundreds of sandboxes."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"page limit must be between 1 and {MAX_PAGE}")
        with self._lock:
            self._page_limit = limit

    # -- used by the request handler -----------------------------------------------------------------------

    @property
    def page_limit(self) -> int:
        return self._page_limit

    def accepts(self, key: str | None) -> bool:
        return bool(key) and (not self._strict_key or key == self.api_key)

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.method in ("*", method)
                    and path.startswith(fault.path_prefix)
                    and fault.remaining > 0
                ):
                    fault.remaining -= 1
                    return fault
        return None

    def take_latency(self, method: str, path: str) -> float:
        """The delay for this request: the first matching latency rule's (0 when none matches)."""
        with self._lock:
            for latency in self._latencies:
                if (
                    latency.method in ("*", method)
                    and path.startswith(latency.path_prefix)
                    and (latency.remaining is None or latency.remaining > 0)
                ):
                    if latency.remaining is not None:
                        latency.remaining -= 1
                    return latency.seconds
        return 0.0

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._log.append((method, path, status))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(StoppableHTTPServer):
    """`stop()` cuts keep-alive connections, which would otherwise keep serving; `server_close()` never
    waits for handler threads (a stream's thread lives as long as its command)."""

    def __init__(self, address: tuple[str, int], app: LocalE2B) -> None:
        self.app = app
        self.stopping = threading.Event()
        super().__init__(address, _Handler)


_ID = r"(?P<id>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/(?:v2/)?sandboxes"), "_create"),
    ("GET", re.compile(r"/v2/sandboxes"), "_list_v2"),
    ("GET", re.compile(r"/sandboxes"), "_list_v1"),
    ("GET", re.compile(rf"/sandboxes/{_ID}"), "_get"),
    ("DELETE", re.compile(rf"/sandboxes/{_ID}"), "_kill"),
    ("POST", re.compile(rf"/sandboxes/{_ID}/pause"), "_pause"),
    ("POST", re.compile(rf"/(?:v2/)?sandboxes/{_ID}/connect"), "_connect"),
    ("POST", re.compile(rf"/sandboxes/{_ID}/resume"), "_resume"),
    ("POST", re.compile(rf"/sandboxes/{_ID}/timeout"), "_timeout"),
    ("POST", re.compile(rf"/sandboxes/{_ID}/refreshes"), "_refresh"),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "e2b-local"
    server: _Server

    def setup(self) -> None:
        """No Nagle: headers and body go out in separate writes, and delayed ACKs would add 40 ms to each."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: `request_log` keeps what tests need; the default writes every request to stderr."""

    def send_response(self, code: int, message: str | None = None) -> None:
        """Log before the client can see the answer, so a test reading `request_log` after a call finds it."""
        self._status = code
        path = urlsplit(getattr(self, "path", "")).path  # unset when the request line itself was malformed
        if not path.startswith(LOCAL_PREFIX):  # the control API is not part of what is being observed
            self.server.app.record(self.command or "", path, int(code))
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The stdlib's own refusals (malformed request, unknown method) in the API's JSON error shape."""
        self.close_connection = True
        self._error(code, message or HTTPStatus(code).phrase, {"Connection": "close"})

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    # -- plumbing ------------------------------------------------------------------------------------------

    def _handle(self) -> None:
        self._status = 0
        app = self.server.app
        url = urlsplit(self.path)
        to_envd = bool(self.headers.get("E2b-Sandbox-Id") or self.headers.get("E2b-Sandbox-Port"))
        # An upload's body is read by the file API as it writes (octet-stream goes straight to disk).
        self._body_state = (
            "pending" if to_envd and self.command == "POST" and url.path == "/files" else "none"
        )
        try:
            try:
                body = b"" if self._body_state == "pending" else self._read_body()
            except ApiError:
                self.close_connection = True  # the rest of the body is still unread on the socket
                raise
            if url.path.startswith(LOCAL_PREFIX) and not to_envd:
                self._local(url.path, url.query, body)
                return
            delay = app.take_latency(self.command, url.path)
            if delay and self.server.stopping.wait(delay):
                self.close_connection = True  # stopped meanwhile: as if the request never arrived
                return
            fault = app.take_fault(self.command, url.path)
            if fault is not None:
                headers = (
                    {} if fault.retry_after is None else {"Retry-After": str(math.ceil(fault.retry_after))}
                )
                self._drain_body()
                self._error(fault.status, f"injected fault ({fault.status})", headers)
            elif to_envd:
                self._envd(url.path, url.query, body)
            else:
                self._control(url.path, url.query, body)
        except ApiError as error:
            self._drain_body()
            self._error(error.status, error.message)
        except OSError:
            self.close_connection = True
        except Exception:
            log.exception("e2b_local failed on %s %s", self.command, self.path)
            if not self._status:
                self._error(500, "internal error in the local E2B API")
            self.close_connection = True
        finally:
            if self._body_state in ("pending", "reading"):
                self.close_connection = True  # what is left of the body would be read as the next request
            if not self._status:  # no answer at all (the connection broke): still worth a log line
                app.record(self.command, url.path, 0)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            size = 0
            while (length := _chunk_size(self.rfile.readline(1024))) > 0:
                size += length
                if size > MAX_BODY:
                    raise ApiError(413, "request body too large")
                chunks.append(self.rfile.read(length))
                self.rfile.readline(1024)
            while self.rfile.readline(1024).strip():  # trailers, then the blank line
                pass
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ApiError(413, "request body too large")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the connection ended first: nothing to answer, nothing to do
            raise ConnectionAbortedError("the request body was cut short")
        return body

    def send_json(
        self,
        status: int,
        body: Any,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", content_type)
        if status != 204:
            self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.send_json(status, {"code": status, "message": message}, headers=headers)

    # envd.Exchange, files.FilesExchange
    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def header_items(self) -> list[tuple[str, str]]:
        return list(self.headers.items())

    def upload_chunks(self) -> Iterator[bytes]:
        """The request body in pieces as it arrives (chunked or Content-Length), for the file API."""
        if self._body_state != "pending":
            return
        self._body_state = "reading"
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while (length := _chunk_size(self.rfile.readline(1024))) > 0:
                yield from self._read_exactly(length)
                self.rfile.readline(1024)
            while self.rfile.readline(1024).strip():  # trailers, then the blank line
                pass
        else:
            yield from self._read_exactly(int(self.headers.get("Content-Length") or 0))
        self._body_state = "done"

    def _read_exactly(self, length: int) -> Iterator[bytes]:
        while length > 0:
            data = self.rfile.read(min(length, READ_CHUNK))
            if not data:
                raise ConnectionAbortedError("the request body was cut short")
            length -= len(data)
            yield data

    def _drain_body(self) -> None:
        """Read (and drop) an upload not taken yet before answering it: a client still sending would not
        read the answer, and an unread body would be parsed as the next request. Too big: close instead."""
        if self._body_state != "pending":
            return
        drained = 0
        try:
            for chunk in self.upload_chunks():
                drained += len(chunk)
                if drained > MAX_BODY:
                    self.close_connection = True
                    return
        except (OSError, ApiError):
            self.close_connection = True

    def send_file(self, path: Path, size: int, headers: dict[str, str]) -> None:
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed below, after the answer has started
        except OSError as error:
            raise ApiError(500, f"error opening file: {error.strerror}") from error
        with file:
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            remaining = size
            while remaining > 0 and (chunk := file.read(min(READ_CHUNK, remaining))):
                self.wfile.write(chunk)
                remaining -= len(chunk)
        if remaining:  # the file shrank meanwhile: the length sent is a lie, so end the connection
            self.close_connection = True

    def start_chunked(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> bool:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except OSError:
            self.close_connection = True
            return False
        return True

    def finish_chunked(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def client_gone(self) -> bool:
        """A readable socket with nothing to read means the client closed it (it sends nothing mid-stream)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            gone = bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            gone = True
        if gone:
            self.close_connection = True
        return gone

    # -- envd ----------------------------------------------------------------------------------------------

    def _envd(self, path: str, query: str, body: bytes) -> None:
        """What the edge proxy and envd answer; absent and paused sandboxes get the proxy's JSON errors."""
        registry = self.server.app.registry
        sandbox_id = self.headers.get("E2b-Sandbox-Id", "")
        sandbox = registry.get(sandbox_id)
        if sandbox is None:
            self.send_json(
                502, {"sandboxId": sandbox_id, "message": "The sandbox was not found", "code": 502}
            )
            return
        if sandbox.state == PAUSED:
            if not sandbox.auto_resume:
                body_409 = {
                    "sandboxId": sandbox_id,
                    "message": "The sandbox is paused",
                    "code": 409,
                    "canAutoResume": False,
                }
                self.send_json(409, body_409)
                return
            registry.connect(
                sandbox_id, sandbox.timeout
            )  # auto-resume: traffic wakes it, like the real proxy
        port = self.headers.get("E2b-Sandbox-Port", envd.ENVD_PORT)
        if port != envd.ENVD_PORT:
            message = "The sandbox is running but port is not open"
            self.send_json(502, {"sandboxId": sandbox_id, "message": message, "port": port, "code": 502})
            return
        if path == "/health":
            self.send_json(204, None)
            return
        if self.headers.get("X-Access-Token") != sandbox.access_token:
            self._error(401, "unauthorized access, please provide a valid access token")
            return
        if path == "/files":
            files.serve(self, sandbox, self.command, parse_qs(query, keep_blank_values=True))
            return
        envd.dispatch(self, registry, sandbox, path, body)

    # -- the double's own control API ----------------------------------------------------------------------

    def _local(self, path: str, query: str, body: bytes) -> None:
        """`/_local/*`: faults and latency for a server in another process, and what it holds. Only the
        server's own API key is accepted (not just any key, as the control plane does without --api-key)."""
        app = self.server.app
        if self.headers.get("X-API-KEY") != app.api_key:
            raise ApiError(401, "the local control API needs the server's own X-API-KEY")
        if (self.command, path) == ("POST", "/_local/faults"):
            self._add_faults(_json_body(body))
            self.send_json(204, None)
        elif (self.command, path) == ("POST", "/_local/reset-faults"):
            app.reset_faults()
            self.send_json(204, None)
        elif (self.command, path) == ("GET", "/_local/sandboxes"):
            params = parse_qs(query, keep_blank_values=True)
            state = _param(params, "state") or None
            try:
                found = app.sandboxes(metadata=_metadata_filter(_param(params, "metadata")), state=state)
            except ValueError as error:
                raise ApiError(400, str(error)) from error
            self.send_json(200, [_jsonable(snapshot) for snapshot in found])
        else:
            raise ApiError(404, f"{self.command} {path} is not part of the local control API")

    def _add_faults(self, data: dict[str, Any]) -> None:
        """`{"method", "path_prefix", "status"?, "latency_s"?, "times"?, "retry_after"?}`: a status fails the
        next `times` (default 1) matching requests, a latency delays them (default: every one until reset)."""
        method, prefix = data.get("method", "*"), data.get("path_prefix", "/")
        status, latency, times = data.get("status"), data.get("latency_s"), data.get("times")
        retry_after = data.get("retry_after")
        if not isinstance(method, str) or not isinstance(prefix, str):
            raise ApiError(400, "method and path_prefix must be strings")
        if status is None and latency is None:
            raise ApiError(400, "give a status, a latency_s or both")
        if not all(_is_number(value) for value in (latency, retry_after)):
            raise ApiError(400, "latency_s and retry_after must be numbers of seconds")
        if any(value is not None and not _is_int(value) for value in (status, times)):
            raise ApiError(400, "status and times must be integers")
        app = self.server.app
        try:
            if latency is not None:
                app.inject_latency(method, prefix, float(latency), times)
            if status is not None:
                app.inject(method, prefix, status, times or 1, retry_after)
        except ValueError as error:
            raise ApiError(400, str(error)) from error

    # -- control plane -------------------------------------------------------------------------------------

    def _control(self, path: str, query: str, body: bytes) -> None:
        if not self.server.app.accepts(self.headers.get("X-API-KEY")):
            raise ApiError(401, "Invalid API key, please visit the API Keys tab in the dashboard to get it.")
        for method, pattern, handler_name in _ROUTES:
            match = pattern.fullmatch(path)
            if match and method == self.command:
                getattr(self, handler_name)(match, parse_qs(query, keep_blank_values=True), _json_body(body))
                return
        raise ApiError(404, f"{self.command} {path} is not implemented by the local E2B API")

    def _create(self, match: re.Match[str], query: Any, data: dict[str, Any]) -> None:
        template = data.get("templateID")
        if not isinstance(template, str) or not template:
            raise ApiError(400, "templateID is required")
        auto_pause = data.get("autoPause", False)
        auto_resume = data.get("autoResume")
        if isinstance(auto_resume, dict):
            auto_resume = auto_resume.get("enabled", False)
        if not isinstance(auto_pause, bool) or not isinstance(auto_resume, bool | None):
            raise ApiError(400, "autoPause and autoResume.enabled must be booleans")
        sandbox = self.server.app.registry.create(
            template_id=template,
            timeout=check_timeout(data.get("timeout")),
            metadata=check_str_map(data.get("metadata"), "metadata"),
            env_vars=check_str_map(data.get("envVars"), "envVars"),
            auto_pause=auto_pause,
            auto_resume=bool(auto_resume),
            idempotency_key=self.headers.get("Idempotency-Key"),
        )
        self.send_json(201, sandbox.created())

    def _list_v2(self, match: re.Match[str], query: dict[str, list[str]], data: dict[str, Any]) -> None:
        """Filtered, oldest-first (or `order=desc`) pages; the cursor is the last item's creation number."""
        app = self.server.app
        limit = _int_param(query, "limit", MAX_PAGE)
        if not 1 <= limit <= MAX_PAGE:
            raise ApiError(400, f"limit must be between 1 and {MAX_PAGE}")
        limit = min(limit, app.page_limit)
        order = _param(query, "order") or "asc"
        if order not in ("asc", "desc"):
            raise ApiError(400, "order must be asc or desc")
        found = app.registry.query(
            metadata=_metadata_filter(_param(query, "metadata")),
            states=_states(_param(query, "state")),
            template=_param(query, "template") or None,
            started_after=_timestamp(_param(query, "startedAfter")),
        )
        if order == "desc":
            found.reverse()
        token = _param(query, "nextToken")
        if token:
            after = _decode_token(token)
            found = [s for s in found if (s.seq > after if order == "asc" else s.seq < after)]
        page = found[:limit]
        headers = {"X-Next-Token": _encode_token(page[-1].seq)} if len(found) > limit else {}
        self.send_json(200, [sandbox.listed() for sandbox in page], headers=headers)

    def _list_v1(self, match: re.Match[str], query: dict[str, list[str]], data: dict[str, Any]) -> None:
        """The legacy list: running sandboxes only, no paging."""
        found = self.server.app.registry.query(
            metadata=_metadata_filter(_param(query, "metadata")), states=("running",)
        )
        self.send_json(200, [sandbox.listed() for sandbox in found])

    def _get(self, match: re.Match[str], query: Any, data: dict[str, Any]) -> None:
        self.send_json(200, self.server.app.registry.require(match["id"]).detail())

    def _kill(self, match: re.Match[str], query: Any, data: dict[str, Any]) -> None:
        self.server.app.registry.kill(match["id"])
        self.send_json(204, None)

    def _pause(self, match: re.Match[str], query: Any, data: dict[str, Any]) -> None:
        self.server.app.registry.pause(match["id"])
        self.send_json(204, None)

    def _connect(self, match: re.Match[str], query: Any, data: dict[str, Any]) -> None:
        sandbox, resumed = self.server.app.registry.connect(match["id"], check_timeout(data.get("timeout")))
        self.send_json(201 if resumed else 200, sandbox.created())

    def _resume(self, match: re.Match[str], query: Any, data: dict[str, Any]) -> None:
        auto_pause = data.get("autoPause")
        sandbox = self.server.app.registry.resume(
            match["id"],
            check_timeout(data.get("timeout")),
            auto_pause if isinstance(auto_pause, bool) else None,
        )
        self.send_json(201, sandbox.created())

    def _timeout(self, match: re.Match[str], query: Any, data: dict[str, Any]) -> None:
        timeout = data.get("timeout")
        if isinstance(timeout, int) and not isinstance(timeout, bool) and timeout < 0:
            timeout = 0  # the API treats a negative timeout as "now"
        if timeout is None:
            raise ApiError(400, "timeout is required")
        self.server.app.registry.set_timeout(match["id"], check_timeout(timeout))
        self.send_json(204, None)

    def _refresh(self, match: re.Match[str], query: Any, data: dict[str, Any]) -> None:
        self.server.app.registry.refresh(
            match["id"], check_timeout(data.get("duration"), default=DEFAULT_TIMEOUT)
        )
        self.send_json(204, None)


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _jsonable(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat() if isinstance(value, datetime) else value for key, value in snapshot.items()
    }


def _chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";")[0].strip() or b"0", 16)
    except ValueError as error:
        raise ApiError(400, "malformed chunked request body") from error


def _json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError as error:
        raise ApiError(400, f"invalid JSON body: {error}") from error
    if not isinstance(data, dict):
        raise ApiError(400, "the JSON body must be an object")
    return data


def _param(query: dict[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = _param(query, name)
    try:
        return int(raw) if raw else default
    except ValueError as error:
        raise ApiError(400, f"{name} must be an integer") from error


def _metadata_filter(raw: str) -> dict[str, str] | None:
    """Undo the SDK's encoding: each key and value url-quoted, joined k=v&k=v, that string quoted again."""
    if not raw:
        return None
    pairs: dict[str, str] = {}
    for part in unquote(raw).split("&"):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ApiError(400, f"invalid metadata filter {raw!r}: expected key=value pairs")
        pairs[unquote(key)] = unquote(value)
    return pairs


def _states(raw: str) -> tuple[str, ...]:
    if not raw:
        return STATES  # no state filter means running AND paused
    states = tuple(state.strip() for state in raw.split(",") if state.strip())
    if not states or any(state not in STATES for state in states):
        raise ApiError(400, f"state must be a comma-separated subset of {','.join(STATES)}")
    return states


def _timestamp(raw: str) -> float | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).timestamp()
    except ValueError as error:
        raise ApiError(400, f"startedAfter must be an RFC 3339 time, not {raw!r}") from error


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"e2b-local:{seq}".encode()).decode()


def _decode_token(token: str) -> int:
    try:
        prefix, _, seq = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if prefix != "e2b-local":
            raise ValueError(prefix)
        return int(seq)
    except ValueError as error:
        raise ApiError(400, f"invalid nextToken {token!r}") from error
