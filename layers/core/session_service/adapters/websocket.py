"""Sending to live-feed connections through API Gateway's management API (post_to_connection).

A GoneException (410) — the client left, reconnected under a new id, or never finished connecting — is an
outcome (False): the caller removes that stale connection. Throttling and server errors raise
FeedUnavailable so the stream record is retried; anything the client did (a closed socket) is not ours.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from session_service.adapters.aws import aws_client
from session_service.domain.errors import FeedUnavailable
from session_service.observability import logger
from session_service.settings import Settings

MAX_FRAME_BYTES = 128 * 1024  # API Gateway WebSocket's message limit


class ApiGatewayConnectionPusher:
    def __init__(self, settings: Settings) -> None:
        self._client = aws_client(
            "apigatewaymanagementapi",
            settings,
            connect=1,
            read=2,
            attempts=2,
            endpoint_url=settings.websocket_endpoint,
        )

    def send(self, connection_id: str, frame: str) -> bool:
        data = frame.encode()
        if len(data) > MAX_FRAME_BYTES:  # frames carry ids, not contents: this would be our bug
            logger.error("feed frame too large; not sent", extra={"bytes": len(data)})
            return True
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("GoneException", "ForbiddenException"):
                return False
            raise FeedUnavailable(f"post_to_connection failed: {code}") from error
        except BotoCoreError as error:
            raise FeedUnavailable(f"post_to_connection failed: {error!r}") from error
        return True

    def close(self, connection_id: str) -> None:
        try:
            self._client.delete_connection(ConnectionId=connection_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("GoneException", "ForbiddenException"):
                logger.warning("could not close a feed connection", extra={"error": repr(error)})
        except BotoCoreError as error:
            logger.warning("could not close a feed connection", extra={"error": repr(error)})
