"""A project's tool catalog in the tools table, and the in-memory copy each process keeps of it.

Tools are `pk=<project_id>, sk="tool#<name>"`. Every PUT or DELETE also adds 1 to the catalog's version,
kept in CATALOG_VERSION_COPIES items of their own partitions, in the same transaction. A reader (every tool
call, search and MCP request) reads one copy, strongly consistent, and re-queries the whole catalog only
when the version moved: read-your-writes for a tool just PUT, one small read per request otherwise, and no
partition that every call of a large tenant reads.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from session_service.adapters.dynamodb.tables import Tables, dynamodb_errors, lost_race
from session_service.domain import keys
from session_service.domain.entities import Tool
from session_service.domain.errors import Conflict

_TOOL = "tool#"
_ATTEMPTS = 3


class DynamoToolStore:
    def __init__(self, tables: Tables) -> None:
        self._t = tables
        self._cached: dict[str, tuple[int, list[Tool]]] = {}  # project → (version, tools)
        self._lock = threading.Lock()

    @staticmethod
    def _to_tool(item: Any) -> Tool:
        return Tool(
            name=item.sk[len(_TOOL) :],
            description=item.description or "",
            input_schema=item.input_schema or {},
            tags=tuple(item.tags or ()),
            command=item.command,
            timeout_s=int(item.timeout_s or 10),
            created_at=item.created_at,
            updated_at=item.updated_at,
        )

    def _bump_version(self, tx: TransactWrite, project_id: str) -> None:
        T = self._t.ToolItem
        for copy in range(keys.CATALOG_VERSION_COPIES):
            version = T(pk=keys.catalog_version_partition(project_id, copy), sk="version")
            tx.update(version, actions=[T.version.add(1)])

    def put(self, project_id: str, tool: Tool) -> bool:
        T = self._t.ToolItem
        for _ in range(_ATTEMPTS):
            existing = self.get(project_id, tool.name)
            item = T(
                pk=project_id,
                sk=_TOOL + tool.name,
                description=tool.description,
                input_schema=tool.input_schema,
                command=tool.command,
                tags=list(tool.tags),
                timeout_s=tool.timeout_s,
                created_at=existing.created_at if existing else tool.created_at,
                updated_at=tool.updated_at,
            )
            # Created or replaced as it was read: a concurrent PUT of the same name makes one of them retry.
            expected = T.sk.does_not_exist() if existing is None else T.updated_at == existing.updated_at
            with dynamodb_errors("put_tool"):
                try:
                    with TransactWrite(connection=self._t.connection) as tx:
                        tx.save(item, condition=expected)
                        self._bump_version(tx, project_id)
                except TransactWriteError as error:
                    if lost_race(error):
                        continue
                    raise
            return existing is None
        raise Conflict("the tool kept changing while it was being written; retry the request")

    def get(self, project_id: str, name: str) -> Tool | None:
        with dynamodb_errors("get_tool"):
            try:
                item = self._t.ToolItem.get(project_id, _TOOL + name, consistent_read=True)
            except DoesNotExist:
                return None
        return self._to_tool(item)

    def delete(self, project_id: str, name: str) -> bool:
        T = self._t.ToolItem
        with dynamodb_errors("delete_tool"):
            try:
                with TransactWrite(connection=self._t.connection) as tx:
                    tx.delete(T(pk=project_id, sk=_TOOL + name), condition=T.sk.exists())
                    self._bump_version(tx, project_id)
            except TransactWriteError as error:
                if lost_race(error):
                    return False
                raise
        return True

    def page(self, project_id: str, limit: int, after: str | None) -> tuple[list[Tool], str | None]:
        T = self._t.ToolItem
        # The project's own partition holds only its tools (the version copies have partitions of their own).
        condition = T.sk.startswith(_TOOL) if after is None else T.sk > _TOOL + after
        with dynamodb_errors("list_tools"):
            found = [
                self._to_tool(item)
                for item in T.query(
                    project_id, range_key_condition=condition, limit=limit + 1, page_size=limit + 1
                )
            ]
        more = len(found) > limit
        tools = found[:limit]
        return tools, (tools[-1].name if more and tools else None)

    def catalog(self, project_id: str) -> list[Tool]:
        T = self._t.ToolItem
        copy = random.randrange(keys.CATALOG_VERSION_COPIES)  # spreads reads over the copies
        with dynamodb_errors("catalog_version"):
            try:
                version = int(
                    T.get(
                        keys.catalog_version_partition(project_id, copy), "version", consistent_read=True
                    ).version
                    or 0
                )
            except DoesNotExist:
                version = 0
        with self._lock:
            cached = self._cached.get(project_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        if version == 0:
            tools: list[Tool] = []
        else:
            with dynamodb_errors("catalog"):
                tools = [
                    self._to_tool(item)
                    for item in T.query(
                        project_id, range_key_condition=T.sk.startswith(_TOOL), consistent_read=True
                    )
                ]
        with self._lock:
            self._cached[project_id] = (version, tools)
        return tools
