"""The cache epoch (session_service.services.cache_epoch) in the projects table: `copies` items, each its own
partition (pk="_cache_epoch#<n>"), so that readers spread out; a raise writes them all."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist, PynamoDBException

from session_service.adapters.dynamodb.tables import Tables, condition_failed, dynamodb_errors


def epoch_partition(copy: int) -> str:
    return f"_cache_epoch#{copy}"  # not a project id (those start with "prj_")


class DynamoCacheEpochStore:
    def __init__(self, tables: Tables, copies: int) -> None:
        self._t = tables
        self._copies = copies

    def read(self, copy: int) -> int:
        with dynamodb_errors("read_cache_epoch"):
            try:
                item = self._t.ProjectItem.get(epoch_partition(copy), "epoch", consistent_read=True)
            except DoesNotExist:
                return 0
        return int(item.epoch_ms or 0)

    def raise_to(self, epoch_ms: int) -> None:
        P = self._t.ProjectItem
        with dynamodb_errors("raise_cache_epoch"):
            for copy in range(self._copies):
                try:
                    P(pk=epoch_partition(copy), sk="epoch").update(
                        actions=[P.epoch_ms.set(epoch_ms)],
                        condition=P.epoch_ms.does_not_exist() | (P.epoch_ms < epoch_ms),
                    )
                except PynamoDBException as error:
                    if not condition_failed(error):  # failed condition: already at least as high
                        raise
