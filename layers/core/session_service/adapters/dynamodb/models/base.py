"""What every model module shares: an index's Meta, and binding a declared model to one table."""

from __future__ import annotations

from typing import Any, TypeVar

from pynamodb.indexes import AllProjection
from pynamodb.models import Model

M = TypeVar("M", bound=Model)


def index_meta(name: str, projection: Any = None) -> type:
    return type("Meta", (), {"index_name": name, "projection": projection or AllProjection()})


def bind(model: type[M], table_name: str, meta: dict[str, Any]) -> type[M]:
    """`model` bound to `table_name` with the connection options in `meta`; its indexes are new objects of
    the same classes, so queries on them reach this table."""
    attributes: dict[str, Any] = {"Meta": type("Meta", (), {"table_name": table_name, **meta})}
    for name, index in model._indexes.items():
        attributes[name] = type(index)()
    return type(model.__name__, (model,), attributes)
