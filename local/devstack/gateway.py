"""A local API Gateway HTTP API for the template's HttpApi routes: the Lambda REQUEST authorizer first,
then the route's function, with payload format 2.0 events and API Gateway's response mapping.

The behaviours a client can observe are API Gateway's: a request without the identity header is 401
without calling the authorizer; `isAuthorized: false` is 403; an unknown route is 404; a function error
(exception, timeout, crash) is 500 `{"message":"Internal Server Error"}`; bodies over 10 MB are 413.
One addition of the dev stack's own: GET /docs, a reference page for the API's OpenAPI document
(devstack.docs).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, unquote

from devstack import docs
from devstack.functions import FunctionRuntime, Invocation, RuntimeStopped
from devstack.httpserver import StoppableHTTPServer
from devstack.limits import HTTP_API_REQUEST_BYTES
from devstack.template import Authorizer, HttpRoute, LocalResources, Template, resolve

log = logging.getLogger("devstack.gateway")

MAX_BODY_BYTES = HTTP_API_REQUEST_BYTES
TEXT_TYPES = re.compile(r"^text/|json|xml|javascript|x-www-form-urlencoded|graphql", re.IGNORECASE)
# API Gateway's own error bodies.
UNAUTHORIZED = (401, {"message": "Unauthorized"})
FORBIDDEN = (403, {"message": "Forbidden"})
NOT_FOUND = (404, {"message": "Not Found"})
TOO_LARGE = (413, {"message": "Request Entity Too Large"})
SERVER_ERROR = (500, {"message": "Internal Server Error"})


@dataclass(frozen=True)
class Route:
    """A compiled HttpApi route: `{name}` matches one path segment, `{name+}` the rest of the path."""

    http: HttpRoute
    pattern: re.Pattern[str]
    authorizer: Authorizer | None

    @property
    def route_key(self) -> str:
        return "$default" if self.http.path == "$default" else f"{self.http.method} {self.http.path}"

    @property
    def specificity(self) -> tuple[int, int, int]:
        """HTTP API prefers literal paths, then fewer parameters, and greedy paths last."""
        path = self.http.path
        return (path.count("+}"), path.count("{"), -len(path))

    @classmethod
    def compile(cls, route: HttpRoute, authorizer: Authorizer | None) -> Route:
        if route.path == "$default":
            return cls(route, re.compile(r".*"), authorizer)
        parts = []
        for segment in re.split(r"(\{[^}]+\})", route.path):
            if segment.startswith("{") and segment.endswith("+}"):
                parts.append(f"(?P<{segment[1:-2]}>.+)")
            elif segment.startswith("{"):
                parts.append(f"(?P<{segment[1:-1]}>[^/]+)")
            else:
                parts.append(re.escape(segment))
        return cls(route, re.compile("".join(parts)), authorizer)


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Gateway:
    """Serves the HttpApi on `host:port` (0 picks a free port) and invokes functions through `runtime`."""

    def __init__(
        self,
        template: Template,
        resources: LocalResources,
        runtime: FunctionRuntime,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        stage: str | None = None,
        authorizer_cache: bool = False,
    ) -> None:
        self.template = template
        self.resources = resources
        self.runtime = runtime
        self.host = host
        self.port = port
        api = template.http_api
        self.api_id = (
            resources.ref(api.logical_id) if api and api.logical_id in resources.resources else "local"
        )
        if stage is None:
            stage = (
                str(resolve(api.stage_name, resources, f"{api.logical_id}.StageName")) if api else "$default"
            )
        self.stage = stage
        routes = []
        for route in template.routes:
            authorizer = api.authorizer_for(route) if api else None
            routes.append(Route.compile(route, authorizer))
        self.routes = sorted(routes, key=lambda r: r.specificity)
        self.authorizer_cache = authorizer_cache
        self._decisions: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any]]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url_path(self) -> str:
        """The path the API is served under: the stage, as in the cloud's ApiUrl ("" for $default)."""
        return "" if self.stage == "$default" else f"/{self.stage}"

    @property
    def url(self) -> str:
        """The base URL clients use (the cloud's ApiUrl output: it includes the stage unless $default)."""
        return f"http://{self.host}:{self.port}{self.url_path}"

    def start(self) -> Gateway:
        server = _Server((self.host, self.port), _Handler)
        server.gateway = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="devstack-gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and cut every open connection; bounded, and no handler thread is waited for.

        A handler can be reading a half-sent body, waiting on an idle keep-alive connection or on a
        function: cutting its socket ends the first two, and the runtime's stop (which kills busy
        workers) ends the third. The port is free when this returns.
        """
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # returns within poll_interval: the serve loop only accepts
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=1)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- routing -------------------------------------------------------------------------------------------

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.http.method not in ("ANY", method):
                continue
            found = route.pattern.fullmatch(path)
            if found:
                return route, {name: unquote(value) for name, value in found.groupdict().items()}
        return None

    def handle(self, request: Request) -> Reply:
        """One request through API Gateway's pipeline: route, authorizer, integration, response mapping."""
        if len(request.body) > MAX_BODY_BYTES:
            return _json_reply(*TOO_LARGE)
        if request.method in ("GET", "HEAD"):  # the dev stack's reference page (not API Gateway's)
            page = docs.serve(request.path, f"{self.url_path}/openapi.json")
            if page is not None:
                status, content_type, body = page
                return Reply(status, [("content-type", content_type)], body)
        path = request.path
        if self.stage != "$default":
            prefix = f"/{self.stage}"
            if path != prefix and not path.startswith(prefix + "/"):
                return _json_reply(*NOT_FOUND)
            path = path[len(prefix) :] or "/"
        matched = self.match(request.method, path)
        if matched is None:
            return _json_reply(*NOT_FOUND)
        route, path_parameters = matched
        event = self.build_event(request, route, path_parameters)
        if route.authorizer is not None:
            denied = self.authorize(route, request, event)
            if denied is not None:
                return denied
        return self.response_for(self.runtime.execute(route.http.function, event))

    # -- the authorizer ------------------------------------------------------------------------------------

    def authorize(self, route: Route, request: Request, event: dict[str, Any]) -> Reply | None:
        """None when allowed (the authorizer's context is put into `event`), else API Gateway's reply."""
        authorizer = route.authorizer
        assert authorizer is not None
        identity = [request.header(name) for name in authorizer.identity_headers]
        if any(not value for value in identity):
            return _json_reply(*UNAUTHORIZED)  # API Gateway does not call the authorizer
        values = tuple(value for value in identity if value)
        cache_key = (authorizer.name, values)
        ttl = self._cache_ttl(authorizer)
        cached = self._decisions.get(cache_key) if ttl else None
        if cached and cached[0] > time.monotonic():
            decision = cached[1]
        else:
            authorizer_event = self.build_authorizer_event(event, route, list(values))
            invocation = self.runtime.execute(authorizer.function_id, authorizer_event)
            if not invocation.ok:
                _log_failure(invocation)
                return _json_reply(*SERVER_ERROR)
            parsed = _authorizer_decision(authorizer, invocation.result)
            if parsed is None:
                log.error(
                    "authorizer %s returned an invalid response: %r",
                    authorizer.function_id,
                    invocation.result,
                )
                return _json_reply(*SERVER_ERROR)
            decision = parsed
            if ttl:
                self._decisions[cache_key] = (time.monotonic() + ttl, decision)
        if not decision["allowed"]:
            return _json_reply(*FORBIDDEN)
        event["requestContext"]["authorizer"] = {"lambda": decision["context"]}
        return None

    def _cache_ttl(self, authorizer: Authorizer) -> float:
        if not self.authorizer_cache:
            return 0.0
        return float(
            resolve(authorizer.reauthorize_every, self.resources, f"{authorizer.name}.ReauthorizeEvery")
        )

    # -- events --------------------------------------------------------------------------------------------

    def request_context(self, request: Request, route: Route) -> dict[str, Any]:
        now = time.time()
        host = request.header("host") or f"{self.host}:{self.port}"
        return {
            "accountId": self.resources.account_id,
            "apiId": self.api_id,
            "domainName": host,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": request.header("user-agent") or "",
            },
            "requestId": request.request_id,
            "routeKey": route.route_key,
            "stage": self.stage,
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        }

    def build_event(
        self, request: Request, route: Route, path_parameters: Mapping[str, str]
    ) -> dict[str, Any]:
        """The payload format 2.0 event: the header and query value lists joined by commas, cookies apart."""
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": request.path,
            "rawQueryString": request.query,
            "headers": request.joined_headers(),
            "requestContext": self.request_context(request, route),
            "isBase64Encoded": False,
        }
        cookies = request.cookies()
        if cookies:
            event["cookies"] = cookies
        query = request.query_parameters()
        if query:
            event["queryStringParameters"] = query
        if path_parameters:
            event["pathParameters"] = dict(path_parameters)
        if request.body:
            content_type = request.header("content-type") or ""
            text = _as_text(request.body) if not content_type or TEXT_TYPES.search(content_type) else None
            if text is None:
                event["body"] = base64.b64encode(request.body).decode()
                event["isBase64Encoded"] = True
            else:
                event["body"] = text
        return event

    def build_authorizer_event(
        self, event: Mapping[str, Any], route: Route, identity: list[str]
    ) -> dict[str, Any]:
        """The REQUEST authorizer's payload 2.0 event, derived from the route's event."""
        context = event["requestContext"]
        method, path = context["http"]["method"], event["rawPath"]
        resource_path = path[len(self.stage) + 1 :] if self.stage != "$default" else path
        route_arn = (
            f"arn:aws:execute-api:{self.resources.region}:{self.resources.account_id}:"
            f"{self.api_id}/{self.stage}/{method}{resource_path}"
        )
        authorizer_event = {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": route_arn,
            "identitySource": identity,
            "routeKey": event["routeKey"],
            "rawPath": path,
            "rawQueryString": event["rawQueryString"],
            "headers": event["headers"],
            "requestContext": dict(context),  # the route's context gets `authorizer` added afterwards
        }
        for optional in ("cookies", "queryStringParameters", "pathParameters"):
            if optional in event:
                authorizer_event[optional] = event[optional]
        return authorizer_event

    # -- responses -----------------------------------------------------------------------------------------

    def response_for(self, invocation: Invocation) -> Reply:
        """API Gateway's mapping of a payload 2.0 Lambda response to HTTP."""
        if not invocation.ok:
            _log_failure(invocation)
            return _json_reply(*SERVER_ERROR)
        result = invocation.result
        if not (isinstance(result, dict) and "statusCode" in result):
            # Without a statusCode, API Gateway returns the function's JSON result as the body.
            return Reply(200, [("content-type", "application/json")], json.dumps(result).encode())
        try:
            status = int(result["statusCode"])
            headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
            for name, values in (result.get("multiValueHeaders") or {}).items():
                headers.extend((str(name), str(value)) for value in values)
            headers.extend(("set-cookie", str(cookie)) for cookie in result.get("cookies") or ())
            body = result.get("body")
            if body is None:
                payload = b""
            elif result.get("isBase64Encoded"):
                payload = base64.b64decode(str(body), validate=True)
            else:
                payload = (body if isinstance(body, str) else json.dumps(body)).encode()
        except (TypeError, ValueError, AttributeError, binascii.Error):
            log.error("%s returned a malformed response: %r", invocation.function, result)
            return _json_reply(*SERVER_ERROR)
        if not 100 <= status <= 599:
            log.error("%s returned status %s", invocation.function, status)
            return _json_reply(*SERVER_ERROR)
        return Reply(status, headers, payload)


def _log_failure(invocation: Invocation) -> None:
    """What CloudWatch would show for a failed invocation: the error and its stack trace."""
    error = invocation.error or {}
    trace = "".join(error.get("stackTrace") or ())
    log.error(
        "%s %s: %s: %s\n%s",
        invocation.function,
        invocation.request_id,
        error.get("errorType"),
        error.get("errorMessage"),
        trace.rstrip(),
    )


def _authorizer_decision(authorizer: Authorizer, result: Any) -> dict[str, Any] | None:
    """{"allowed", "context"} from a simple response or an IAM policy response; None if malformed."""
    if not isinstance(result, dict):
        return None
    if authorizer.enable_simple_responses:
        allowed = result.get("isAuthorized")
        if not isinstance(allowed, bool):
            return None
        return {"allowed": allowed, "context": result.get("context") or {}}
    statements = (result.get("policyDocument") or {}).get("Statement") or []
    if not isinstance(statements, list):
        return None
    effects = {
        str(statement.get("Effect", "")).lower() for statement in statements if isinstance(statement, dict)
    }
    return {"allowed": "allow" in effects and "deny" not in effects, "context": result.get("context") or {}}


def _as_text(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _json_reply(status: int, body: dict[str, Any]) -> Reply:
    return Reply(status, [("content-type", "application/json")], json.dumps(body).encode())


# --------------------------------------------------------------------------------------------------------
# HTTP plumbing.
# --------------------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: str
    protocol: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    request_id: str

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ",".join(values) if values else None

    def joined_headers(self) -> dict[str, str]:
        joined: dict[str, str] = {}
        for key, value in self.headers:
            name = key.lower()
            if name == "cookie":
                continue
            joined[name] = f"{joined[name]},{value}" if name in joined else value
        return joined

    def cookies(self) -> list[str]:
        return [
            cookie.strip()
            for key, value in self.headers
            if key.lower() == "cookie"
            for cookie in value.split(";")
            if cookie.strip()
        ]

    def query_parameters(self) -> dict[str, str]:
        joined: dict[str, str] = {}
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            joined[key] = f"{joined[key]},{value}" if key in joined else value
        return joined


class _Server(StoppableHTTPServer):
    """`Gateway.stop()` cuts its open connections; it never joins handler threads."""

    gateway: Gateway


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 60  # an idle keep-alive connection is closed after a minute

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged once, by _serve, with their latency."""

    def _serve(self) -> None:
        started = time.perf_counter()
        path, _, query = self.path.partition("?")
        request_id = base64.b64encode(secrets.token_bytes(10)).decode().rstrip("=") + "="
        try:
            body = self._read_body()
        except _ClientGone:  # the body never arrived whole: API Gateway invokes nothing, and neither do we
            self.close_connection = True
            return
        except ValueError:
            reply = _json_reply(400, {"message": "Bad Request"})
        except _TooLarge:
            reply = _json_reply(*TOO_LARGE)
            self.close_connection = True
        else:
            request = Request(
                method=self.command,
                path=path,
                query=query,
                protocol=self.request_version,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                request_id=request_id,
            )
            try:
                reply = self.server.gateway.handle(request)
            except RuntimeStopped:  # the dev stack is stopping
                reply = _json_reply(503, {"message": "Service Unavailable"})
                self.close_connection = True
            except Exception:
                log.exception("gateway error on %s %s", self.command, path)
                reply = _json_reply(*SERVER_ERROR)
        self.send_response(reply.status)
        names = {name.lower() for name, _ in reply.headers}
        for name, value in reply.headers:
            self.send_header(name, value)
        if "date" not in names:
            self.send_header("date", formatdate(usegmt=True))
        self.send_header("content-length", str(len(reply.body)))
        self.send_header("apigw-requestid", request_id)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)
        log.info("%s %s %d %.0fms", self.command, path, reply.status, (time.perf_counter() - started) * 1000)

    def send_response(self, code: int, message: str | None = None) -> None:
        self.send_response_only(code, message)  # no Server/Date defaults: the reply sets its own

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            return self._read_chunked()
        length = int(self.headers.get("content-length") or 0)
        if length < 0:
            raise ValueError("negative content-length")
        if length > MAX_BODY_BYTES:
            self._discard(length)
            raise _TooLarge
        body = self.rfile.read(length)
        if len(body) < length:
            raise _ClientGone
        return body

    def _discard(self, length: int) -> None:
        """Read a refused body so the client sees the 413 rather than a reset (up to a sane amount)."""
        remaining = min(length, 8 * MAX_BODY_BYTES)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _TooLarge
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        """Any other method (TRACE, PROPFIND...) is routed like the rest, so it gets API Gateway's 404 rather
        than http.server's 501 HTML page."""
        if name.startswith("do_") and name[3:].isupper():
            return self._serve
        raise AttributeError(name)


class _TooLarge(Exception):
    pass


class _ClientGone(Exception):
    """The connection ended (or was cut by stop()) before the whole request arrived."""
