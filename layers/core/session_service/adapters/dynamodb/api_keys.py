"""API keys by their SHA-256 (the secret itself is never stored), with a by_project index for the admin."""

from __future__ import annotations

from typing import Any

from pynamodb.exceptions import DoesNotExist

from session_service.adapters.dynamodb.tables import Tables, dynamodb_errors
from session_service.domain.entities import ApiKeyRecord


class DynamoKeyStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    @staticmethod
    def _to_record(item: Any) -> ApiKeyRecord:
        return ApiKeyRecord(
            key_hash=item.key_hash,
            key_id=item.key_id,
            project_id=item.project_id,
            created_at=item.created_at,
            revoked_at=item.revoked_at,
        )

    def get_by_hash(self, key_hash: str) -> ApiKeyRecord | None:
        # Eventually consistent (half a read unit): a revocation may take under a second to be seen, well
        # inside the authorizer cache's own TTL, and a busy key's item stays far from its partition's limit.
        with dynamodb_errors("get_api_key"):
            try:
                item = self._t.ApiKeyItem.get(key_hash, consistent_read=False)
            except DoesNotExist:
                return None
        return self._to_record(item)

    def put(self, record: ApiKeyRecord) -> None:
        K = self._t.ApiKeyItem
        item = K(
            key_hash=record.key_hash,
            key_id=record.key_id,
            project_id=record.project_id,
            created_at=record.created_at,
            revoked_at=record.revoked_at,
        )
        with dynamodb_errors("put_api_key"):
            item.save(condition=K.key_hash.does_not_exist())

    def list_for_project(self, project_id: str) -> list[ApiKeyRecord]:
        with dynamodb_errors("list_api_keys"):
            return [self._to_record(item) for item in self._t.ApiKeyItem.by_project.query(project_id)]

    def revoke(self, project_id: str, key_id: str, revoked_at: str) -> bool:
        K = self._t.ApiKeyItem
        with dynamodb_errors("revoke_api_key"):
            matches = list(K.by_project.query(project_id, range_key_condition=K.key_id == key_id))
            if not matches:
                return False
            for item in matches:
                K(key_hash=item.key_hash).update(
                    actions=[K.revoked_at.set(revoked_at)], condition=K.key_hash.exists()
                )
        return True
