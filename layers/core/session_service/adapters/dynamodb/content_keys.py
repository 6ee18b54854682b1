"""The keys table: project keys (wrapped by KMS) and session keys (wrapped by their project's key).

The table has no point-in-time recovery, no stream and no backups (template.yaml, KeysTable): a deleted
session key leaves no copy anywhere, which is what makes teardown's deletion a shredding of the session's
content. Reads are strongly consistent, so a session created a moment ago is readable everywhere.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pynamodb.exceptions import DoesNotExist, PutError

from session_service.adapters.dynamodb.tables import Tables, condition_failed, dynamodb_errors
from session_service.domain import clock, keys

_BATCH = 100  # BatchGetItem's maximum


class DynamoContentKeyStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables

    def project_key(self, project_id: str) -> bytes | None:
        with dynamodb_errors("get_project_key"):
            try:
                item = self._t.KeyItem.get(keys.project_key_partition(project_id), consistent_read=True)
            except DoesNotExist:
                return None
        return bytes(item.wrapped)

    def add_project_key(self, project_id: str, wrapped: bytes) -> bool:
        K = self._t.KeyItem
        item = K(pk=keys.project_key_partition(project_id), wrapped=wrapped, created_at=clock.utc_now_iso())
        with dynamodb_errors("put_project_key"):
            try:
                item.save(condition=K.pk.does_not_exist())
            except PutError as error:
                if condition_failed(error):
                    return False
                raise
        return True

    def session_keys(self, project_id: str, session_ids: list[str]) -> dict[str, bytes]:
        K = self._t.KeyItem
        by_partition = {keys.session_key_partition(project_id, sid): sid for sid in session_ids}
        found: dict[str, bytes] = {}
        with dynamodb_errors("get_session_keys"):
            if len(by_partition) == 1:
                ((partition, session_id),) = by_partition.items()
                with contextlib.suppress(DoesNotExist):
                    found[session_id] = bytes(K.get(partition, consistent_read=True).wrapped)
                return found
            partitions = list(by_partition)
            for start in range(0, len(partitions), _BATCH):
                batch: Any = K.batch_get(partitions[start : start + _BATCH], consistent_read=True)
                for item in batch:
                    found[by_partition[item.pk]] = bytes(item.wrapped)
        return found

    def destroy_session_key(self, project_id: str, session_id: str) -> None:
        with dynamodb_errors("delete_session_key"):
            self._t.KeyItem(pk=keys.session_key_partition(project_id, session_id)).delete()
