"""Session tokens by the SHA-256 of the token, with a by_session index so that teardown can purge them."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from session_service.adapters.dynamodb.tables import Tables, dynamodb_errors, live_session, lost_race
from session_service.domain import keys
from session_service.domain.entities import TokenRecord


class DynamoTokenStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def issue(self, record: TokenRecord) -> bool:
        S, T = self._t.SessionItem, self._t.TokenItem
        item = T(
            token_hash=record.token_hash,
            token_id=record.token_id,
            project_id=record.project_id,
            session_id=record.session_id,
            session_key=keys.audit_partition(record.project_id, record.session_id),
            created_at=record.created_at,
            expires_at=record.expires_at,
        )
        with dynamodb_errors("issue_token"):
            try:
                # The fence: no token is ever written for a session that is unknown or already deleted.
                with TransactWrite(connection=self._t.connection) as tx:
                    tx.condition_check(
                        S,
                        keys.session_partition(record.project_id, record.session_id),
                        record.session_id,
                        condition=live_session(S),
                    )
                    tx.save(item, condition=T.token_hash.does_not_exist())
                    # Kept after the session's teardown purges the token itself (no hash in it).
                    tx.save(
                        self._t.AuditItem(
                            session_key=keys.audit_partition(record.project_id, record.session_id),
                            entry=f"token#{record.created_at}#{record.token_id}",
                            kind="token",
                            project_id=record.project_id,
                            session_id=record.session_id,
                            at=record.created_at,
                        )
                    )
            except TransactWriteError as error:
                if lost_race(error):
                    return False
                raise
        return True

    def get_by_hash(self, token_hash: str) -> TokenRecord | None:
        with dynamodb_errors("get_token"):
            try:
                # Strongly consistent: an agent uses a token the moment it is minted. One token is one
                # agent's traffic, so its item is never near its partition's limit.
                item: Any = self._t.TokenItem.get(token_hash, consistent_read=True)
            except DoesNotExist:
                return None
        return TokenRecord(
            token_hash=item.token_hash,
            token_id=item.token_id,
            project_id=item.project_id,
            session_id=item.session_id,
            created_at=item.created_at,
            expires_at=int(item.expires_at),
        )

    def purge_session(self, project_id: str, session_id: str) -> int:
        T = self._t.TokenItem
        with dynamodb_errors("purge_tokens"):
            hashes = [
                item.token_hash for item in T.by_session.query(keys.audit_partition(project_id, session_id))
            ]
            with T.batch_write() as batch:
                for token_hash in hashes:
                    batch.delete(T(token_hash=token_hash))
        return len(hashes)
