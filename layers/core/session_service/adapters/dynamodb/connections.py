"""Live-feed connections. Two sparse KEYS_ONLY indexes find who hears an event: `by_project` (API-key
connections: project_scope = <project_id>) and `by_session` (token connections: session_scope =
"<project_id>#<session_id>"). Rows expire with DynamoDB TTL after API Gateway's 2-hour maximum; reads skip
expired rows, since TTL deletion can lag by days."""

from __future__ import annotations

import time
from typing import Any

from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from session_service.adapters.dynamodb.tables import Tables, dynamodb_errors, live_session, lost_race
from session_service.domain import keys
from session_service.domain.entities import FeedConnection


class DynamoConnectionStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def put(self, connection: FeedConnection) -> bool:
        """False: the connection's session is unknown or deleted (nothing written)."""
        C = self._t.ConnectionItem
        scoped = connection.session_id is not None
        item = C(
            connection_id=connection.connection_id,
            project_id=connection.project_id,
            session_id=connection.session_id,
            project_scope=None if scoped else connection.project_id,
            session_scope=keys.audit_partition(connection.project_id, str(connection.session_id))
            if scoped
            else None,
            connected_at=connection.connected_at,
            expires_at=connection.expires_at,
        )
        with dynamodb_errors("put_connection"):
            if not scoped:
                item.save()
                return True
            S = self._t.SessionItem
            session_id = str(connection.session_id)
            try:
                # The fence, as for tokens: a token's connection is never written once its session is
                # deleted, so every one of them exists before the tombstone and the notifier's passes find it.
                with TransactWrite(connection=self._t.connection) as tx:
                    tx.condition_check(
                        S,
                        keys.session_partition(connection.project_id, session_id),
                        session_id,
                        condition=live_session(S),
                    )
                    tx.save(item)
            except TransactWriteError as error:
                if lost_race(error):
                    return False
                raise
        return True

    def delete(self, connection_id: str) -> None:
        with dynamodb_errors("delete_connection"):
            self._t.ConnectionItem(connection_id=connection_id).delete()

    def _fetch(self, connection_ids: list[str]) -> list[FeedConnection]:
        if not connection_ids:
            return []
        now = time.time()
        found: list[Any] = list(self._t.ConnectionItem.batch_get(connection_ids))
        return [
            FeedConnection(
                connection_id=item.connection_id,
                project_id=item.project_id,
                session_id=item.session_id,
                connected_at=item.connected_at,
                expires_at=int(item.expires_at),
            )
            for item in found
            if int(item.expires_at) > now
        ]

    def of_project(self, project_id: str) -> list[FeedConnection]:
        C = self._t.ConnectionItem
        with dynamodb_errors("project_connections"):
            return self._fetch([item.connection_id for item in C.by_project.query(project_id)])

    def of_session(self, project_id: str, session_id: str) -> list[FeedConnection]:
        C = self._t.ConnectionItem
        with dynamodb_errors("session_connections"):
            ids = [
                item.connection_id
                for item in C.by_session.query(keys.audit_partition(project_id, session_id))
            ]
            return self._fetch(ids)
