"""The live feed and the event bus: who is connected ($connect/$disconnect) and who hears about what.

A connection opened with a project's API key hears every event of the project; one opened with a session
token hears only its session's. Delivery runs from the tables' streams (NotifierFunction): each event is
sent to its recipients; a connection API Gateway reports gone (410) is removed — that stale connection,
never the sender. A token's connection is written only while its session is live (one transaction with
the session's check, like the token itself), so every one exists before the tombstone. When a session is
deleted, its token connections get the session.deleted event and are then closed (their credential died
with the session); once more after session.teardown_completed, for one the index did not show yet.
session.deleted and session.teardown_completed are also put on the event bus for other systems. Deliveries
are at least once: a frame's `id` lets a client drop a duplicate, and after a reconnect a client resyncs
(docs/architecture.md, "Live feed").
"""

from __future__ import annotations

from datetime import timedelta

from session_service.domain import clock
from session_service.domain.entities import FEED_CONNECTION_TTL_S, FeedConnection, Principal
from session_service.domain.errors import NotFound, Unauthorized
from session_service.domain.events import BUS_TYPES, SESSION_DELETED, TEARDOWN_COMPLETED, DomainEvent
from session_service.domain.ports import ConnectionPusher, ConnectionStore, EventPublisher
from session_service.observability import count, logger
from session_service.services import liveness
from session_service.services.auth import Authenticator


class FeedConnections:
    """$connect and $disconnect."""

    def __init__(self, authenticator: Authenticator, connections: ConnectionStore) -> None:
        self._authenticator = authenticator
        self._connections = connections

    def connect(self, connection_id: str, api_key: str | None, token: str | None) -> Principal:
        """Unauthorized (no valid key or token) or NotFound (the token's session is gone)."""
        principal = self._authenticator.principal_for(api_key, f"Bearer {token}" if token else None)
        now = clock.now()
        written = self._connections.put(
            FeedConnection(
                connection_id=connection_id,
                project_id=principal.project_id,
                session_id=principal.session_id,
                connected_at=clock.iso(now),
                expires_at=int((now + timedelta(seconds=FEED_CONNECTION_TTL_S)).timestamp()),
            )
        )
        # A token's session that is gone: checked in the write itself, never before it.
        liveness.require_written(written, principal.session_id or "")
        return principal

    def disconnect(self, connection_id: str) -> None:
        self._connections.delete(connection_id)


class Notifier:
    def __init__(
        self, connections: ConnectionStore, pusher: ConnectionPusher, publisher: EventPublisher | None
    ) -> None:
        self._connections = connections
        self._pusher = pusher
        self._publisher = publisher
        self._of_project: dict[str, list[FeedConnection]] = {}
        self._of_session: dict[tuple[str, str], list[FeedConnection]] = {}

    def new_batch(self) -> None:
        """Connections are looked up once per project (and once per session) per batch of stream records:
        a large tenant's events do not each read its connection list, and a client that connects between two
        batches hears the next one."""
        self._of_project.clear()
        self._of_session.clear()

    def deliver(self, event: DomainEvent) -> None:
        """Raises FeedUnavailable (the record is retried: duplicates are possible, losses are not)."""
        if event.type in BUS_TYPES and self._publisher is not None:
            self._publisher.publish([event])
            count("BusEventsPublished")
        frame = event.frame()
        for connection in self._recipients_of(event):
            if self._pusher.send(connection.connection_id, frame):
                count("FeedFramesSent")
            else:
                self._connections.delete(connection.connection_id)  # the stale one, not the sender
                count("FeedConnectionsGone")
        if event.type in (SESSION_DELETED, TEARDOWN_COMPLETED):
            # Again after teardown: a connection written just before the tombstone that the index did not
            # show yet at session.deleted has heard teardown_completed now, and is closed too.
            close_session_connections(self._connections, self._pusher, event.project_id, event.session_id)

    def _recipients_of(self, event: DomainEvent) -> list[FeedConnection]:
        project, session = event.project_id, (event.project_id, event.session_id)
        if project not in self._of_project:
            self._of_project[project] = self._connections.of_project(event.project_id)
        if session not in self._of_session:
            self._of_session[session] = self._connections.of_session(event.project_id, event.session_id)
        return self._of_project[project] + self._of_session[session]


def close_session_connections(
    connections: ConnectionStore, pusher: ConnectionPusher, project_id: str, session_id: str
) -> int:
    """Close a deleted session's token connections and forget them; how many there were."""
    found = connections.of_session(project_id, session_id)
    for connection in found:
        pusher.close(connection.connection_id)
        connections.delete(connection.connection_id)
    return len(found)


def rejected(error: Exception) -> int:
    """The $connect status for a refusal: 401 for bad credentials, 404 for a session that is gone."""
    if isinstance(error, Unauthorized):
        logger.info("feed connection refused", extra={"reason": error.message})
        return 401
    return 404 if isinstance(error, NotFound) else 500
