"""A local API Gateway WebSocket API for the template's WebSocketApi: a real WebSocket server (the
`websockets` library) that runs the route functions as API Gateway does, and the management API
(`POST/DELETE/GET @connections/{id}`) that functions reach with boto3's apigatewaymanagementapi client.

What a client observes is API Gateway's: the `$connect` function decides the handshake (anything but a 2xx
refuses it with that status); each message runs `$default` (or the route its `action` names); `$disconnect`
runs when the connection ends. A send to an unknown connection is 410 GoneException; a message over 128 KB
is 413 PayloadTooLargeException (API Gateway's limit). Not emulated: the 10-minute idle and 2-hour limits,
frame splitting (32 KB frames), IAM on the management API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from devstack.functions import FunctionRuntime
from devstack.limits import WEBSOCKET_MESSAGE_BYTES
from devstack.template import LocalResources, Template, resolve

log = logging.getLogger("devstack.websocket")

MAX_MESSAGE_BYTES = WEBSOCKET_MESSAGE_BYTES


def _connection_id() -> str:
    """API Gateway's ids look like "L0SM9cOFvHcCIhw=": 10 random bytes, base64 (url-safe here: no "/")."""
    return base64.urlsafe_b64encode(secrets.token_bytes(10)).decode()


class WebSocketGateway:
    def __init__(
        self,
        template: Template,
        resources: LocalResources,
        runtime: FunctionRuntime | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        management_port: int = 0,
    ) -> None:
        api = template.websocket_api
        if api is None:
            raise ValueError("the template has no AWS::Serverless::WebSocketApi")
        self.api = api
        self.runtime = runtime  # set before serving (the stack builds the runtime after the ports are known)
        self.resources = resources
        self.stage = str(resolve(api.stage_name, resources, f"{api.logical_id}.StageName"))
        self.api_id = resources.ref(api.logical_id) if api.logical_id in resources.resources else "localws000"
        self.host, self.port, self.management_port = host, port, management_port
        self._connections: dict[str, tuple[ServerConnection, float]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None
        self._management: ThreadingHTTPServer | None = None
        self._ready = threading.Event()

    # -- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}" + ("" if self.stage == "$default" else f"/{self.stage}")

    @property
    def management_url(self) -> str:
        """What WEBSOCKET_ENDPOINT points at locally (the cloud's https://{api}.execute-api.../{stage})."""
        return f"http://{self.host}:{self.management_port}" + (
            "" if self.stage == "$default" else f"/{self.stage}"
        )

    def start(self) -> WebSocketGateway:
        server = _ManagementServer((self.host, self.management_port), _ManagementHandler)
        server.gateway = self
        self.management_port = server.server_address[1]
        self._management = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        self._thread = threading.Thread(target=self._run, name="devstack-websocket", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WebSocket gateway did not start")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self._serve())
        loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        async with serve(
            self._handle, self.host, self.port, process_request=self._connect, max_size=MAX_MESSAGE_BYTES
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            await self._stopped.wait()
            for connection, _ in list(self._connections.values()):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(1001, "going away"), 1)

    def stop(self) -> None:
        if self._management is not None:
            self._management.shutdown()
            self._management.server_close()
            self._management = None
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=3)

    # -- the routes ----------------------------------------------------------------------------------------

    def _context(
        self, route_key: str, event_type: str, connection_id: str, request: Request | None
    ) -> dict[str, Any]:
        now = time.time()
        host = (
            request.headers.get("Host", f"{self.host}:{self.port}") if request else f"{self.host}:{self.port}"
        )
        return {
            "routeKey": route_key,
            "eventType": event_type,
            "messageDirection": "IN",
            "stage": self.stage,
            "connectionId": connection_id,
            "apiId": self.api_id,
            "domainName": host,
            "requestId": secrets.token_hex(8),
            "extendedRequestId": secrets.token_hex(8),
            "requestTimeEpoch": int(now * 1000),
            "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "identity": {"sourceIp": self.host},
        }

    async def _invoke(self, route_key: str, event: dict[str, Any]) -> Any:
        function = self.api.routes.get(route_key) or self.api.routes.get("$default")
        if function is None or self.runtime is None:
            return None
        runtime = self.runtime
        invocation = await asyncio.get_running_loop().run_in_executor(None, runtime.execute, function, event)
        if not invocation.ok:
            log.error("%s %s failed: %s", route_key, function, (invocation.error or {}).get("errorMessage"))
            return {"statusCode": 500}
        return invocation.result

    async def _connect(self, connection: ServerConnection, request: Request) -> Response | None:
        """$connect decides the handshake: a 2xx accepts it, anything else refuses it with that status."""
        path = urlsplit(request.path)
        expected = "/" if self.stage == "$default" else f"/{self.stage}"
        if path.path.rstrip("/") != expected.rstrip("/"):
            return connection.respond(404, "Not Found\n")
        connection_id = _connection_id()
        connection.connection_id = connection_id  # type: ignore[attr-defined]
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        query = dict(parse_qsl(path.query))
        event = {
            "headers": headers,
            "multiValueHeaders": {name: [value] for name, value in headers.items()},
            "requestContext": self._context("$connect", "CONNECT", connection_id, request),
            "isBase64Encoded": False,
        }
        if query:
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {name: [value] for name, value in query.items()}
        result = await self._invoke("$connect", event)
        status = int((result or {}).get("statusCode", 200)) if isinstance(result, dict) else 200
        if not 200 <= status < 300:
            return Response(status, "Refused", Headers([("Content-Length", "0")]), b"")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        connection_id: str = connection.connection_id  # type: ignore[attr-defined]
        with self._lock:
            self._connections[connection_id] = (connection, time.time())
        close_code = 1000
        try:
            async for message in connection:
                body = message if isinstance(message, str) else message.decode(errors="replace")
                route_key = "$default"
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    action = json.loads(body).get("action")
                    if isinstance(action, str) and action in self.api.routes:
                        route_key = action
                event = {
                    "requestContext": {
                        **self._context(route_key, "MESSAGE", connection_id, None),
                        "messageId": secrets.token_hex(6),
                    },
                    "body": body,
                    "isBase64Encoded": False,
                }
                await self._invoke(route_key, event)
        except ConnectionClosed as closed:
            close_code = closed.rcvd.code if closed.rcvd else 1006
        finally:
            with self._lock:
                self._connections.pop(connection_id, None)
            context = self._context("$disconnect", "DISCONNECT", connection_id, None)
            context["disconnectStatusCode"] = close_code
            await self._invoke(
                "$disconnect", {"headers": {}, "requestContext": context, "isBase64Encoded": False}
            )

    # -- the management API --------------------------------------------------------------------------------

    def post(self, connection_id: str, data: bytes) -> int:
        with self._lock:
            found = self._connections.get(connection_id)
        if found is None or self._loop is None:
            return 410
        if len(data) > MAX_MESSAGE_BYTES:
            return 413
        future = asyncio.run_coroutine_threadsafe(found[0].send(data.decode(errors="replace")), self._loop)
        try:
            future.result(timeout=5)
        except (ConnectionClosed, TimeoutError, RuntimeError):
            return 410
        return 200

    def disconnect(self, connection_id: str) -> int:
        with self._lock:
            found = self._connections.get(connection_id)
        if found is None or self._loop is None:
            return 410
        asyncio.run_coroutine_threadsafe(found[0].close(1000, "closed by the server"), self._loop)
        return 204

    def info(self, connection_id: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._connections.get(connection_id)
        if found is None:
            return None
        connected = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(found[1]))
        return {"ConnectedAt": connected, "LastActiveAt": connected, "Identity": {"SourceIp": self.host}}


class _ManagementServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    gateway: WebSocketGateway


class _ManagementHandler(BaseHTTPRequestHandler):
    server: _ManagementServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _reply(self, status: int, body: dict[str, Any] | None = None, error: str | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if error:
            self.send_header("x-amzn-ErrorType", error)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _connection_id(self) -> str | None:
        path = urlsplit(self.path).path
        marker = "/@connections/"
        return unquote(path.split(marker, 1)[1]) if marker in path else None

    def do_POST(self) -> None:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        connection_id = self._connection_id()
        status = self.server.gateway.post(connection_id, data) if connection_id else 404
        if status == 410:
            self._reply(410, {"message": f"connection {connection_id} is gone"}, "GoneException")
        elif status == 413:
            self._reply(413, {"message": "message too large"}, "PayloadTooLargeException")
        elif status == 404:
            self._reply(404, {"message": "Not Found"})
        else:
            self._reply(200)

    def do_DELETE(self) -> None:
        connection_id = self._connection_id()
        status = self.server.gateway.disconnect(connection_id) if connection_id else 404
        if status == 410:
            self._reply(410, {"message": f"connection {connection_id} is gone"}, "GoneException")
        else:
            self._reply(204)

    def do_GET(self) -> None:
        connection_id = self._connection_id()
        info = self.server.gateway.info(connection_id) if connection_id else None
        if info is None:
            self._reply(410, {"message": f"connection {connection_id} is gone"}, "GoneException")
        else:
            self._reply(200, info)
