"""`python -m devstack.moto_server`: moto's server, with DynamoDB's writes made atomic, as DynamoDB's are.

moto's server handles requests on threads, and its DynamoDB backend takes no lock. Its TransactWriteItems
deep-copies each table it touches, applies the actions, and on any failed condition puts the copies back,
so a transaction that fails while another request commits erases that commit: concurrent conditional
PATCHes of one session were acknowledged with the same version and one of them was lost (the fault suite's
history checker found it; tests/integration/test_devstack_services.py reproduces it in moto itself). The
copy also grows with the table and its stream (about 0.2 ms an item or record): late in a long run every
transaction took a second.

Here every DynamoDB operation that may write runs under one process-wide lock (re-entrant: a transaction
calls the item operations), and TransactWriteItems is done in two phases under it: every condition is
checked first, changing nothing (a failed one cancels the transaction with moto's reasons, and no stream
record of a change that never happened is ever written), then the actions are applied, and only the items
they touch are saved, to be put back if applying fails half-way. Reads take no lock. Anything unusual (too
many actions, two on one item, an unknown action) goes to moto's own implementation, which raises its
validation error before changing anything. Other services (SQS long polls, Secrets Manager) are untouched.
"""

from __future__ import annotations

import copy
import functools
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import MockValidationException, TransactionCanceledException
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType, Item
from moto.dynamodb.models.table import Table
from moto.server import main as moto_main

LOCK = threading.RLock()
READS = ("get_", "describe_", "list_", "query", "scan", "batch_get_item", "transact_get_items")
ACTIONS = ("ConditionCheck", "Put", "Delete", "Update")
MAX_ACTIONS = 100
_moto_transact_write_items = DynamoDBBackend.transact_write_items
Reason = tuple[str | None, str | None, dict[str, Any] | None]
NO_REASON: Reason = (None, None, None)


class _Unusual(Exception):
    """A request moto's own implementation should see (it raises the right validation error)."""


@dataclass(frozen=True)
class _Action:
    kind: str
    op: dict[str, Any]
    table: Table
    hash_key: DynamoType
    range_key: DynamoType | None

    @property
    def item(self) -> Item | None:
        return self.table.get_item(self.hash_key, self.range_key)

    @property
    def target(self) -> tuple[str, str, str]:
        return self.table.name, str(self.hash_key), str(self.range_key)


def _action(backend: DynamoDBBackend, entry: dict[str, Any]) -> _Action:
    if len(entry) != 1:
        raise _Unusual
    kind, op = next(iter(entry.items()))
    if kind not in ACTIONS or "TableName" not in op:
        raise _Unusual
    table = backend.get_table(op["TableName"])
    key = op["Item"] if kind == "Put" else op.get("Key", {})
    key = {name: value for name, value in key.items() if name in (table.hash_key_attr, table.range_key_attr)}
    hash_key, range_key = backend.get_keys_value(table, key)
    return _Action(kind, op, table, hash_key, range_key)


def _check(action: _Action) -> Reason:
    """The action's condition against the item as it is now; changes nothing."""
    condition = action.op.get("ConditionExpression")
    if condition is None:
        return NO_REASON
    current = action.item
    names, values = action.op.get("ExpressionAttributeNames"), action.op.get("ExpressionAttributeValues")
    if get_filter_expression(condition, names, values).expr(current):
        return NO_REASON
    old = None
    if action.op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current is not None:
        old = current.to_json()["Attributes"]
    return ("ConditionalCheckFailed", "The conditional request failed", old)


def _apply(backend: DynamoDBBackend, action: _Action) -> None:
    op, name = action.op, action.op["TableName"]
    expressions: dict[str, Any] = {
        "condition_expression": op.get("ConditionExpression"),
        "expression_attribute_names": op.get("ExpressionAttributeNames"),
        "expression_attribute_values": op.get("ExpressionAttributeValues"),
    }
    if action.kind == "Put":
        backend.put_item(name, op["Item"], **expressions)
    elif action.kind == "Delete":
        backend.delete_item(name, op["Key"], **expressions)
    elif action.kind == "Update":
        backend.update_item(name, op["Key"], update_expression=op["UpdateExpression"], **expressions)


def _restore(action: _Action, saved: Item | None) -> None:
    items: dict[Any, Any] = action.table.items  # hash → item, or hash → {range → item}
    hash_key, range_key = action.hash_key, action.range_key
    if saved is None:
        if range_key is not None:
            items.get(hash_key, {}).pop(range_key, None)
        else:
            items.pop(hash_key, None)
    elif range_key is not None:
        items[hash_key][range_key] = saved
    else:
        items[hash_key] = saved


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    with LOCK:
        try:
            if len(transact_items) > MAX_ACTIONS:
                raise _Unusual
            actions = [_action(self, entry) for entry in transact_items]
            if len({action.target for action in actions}) != len(actions):
                raise _Unusual
        except Exception:  # _Unusual, an unknown table, a key missing: moto's own answer, nothing changed
            return _moto_transact_write_items(self, transact_items)
        reasons = [_check(action) for action in actions]
        if any(code is not None for code, _, _ in reasons):
            raise TransactionCanceledException(reasons)
        saved = [copy.deepcopy(action.item) for action in actions]
        shards = {id(a.table): a.table.stream_shard for a in actions if a.table.stream_shard is not None}
        stream_lengths = {key: len(shard.items) for key, shard in shards.items()}
        for index, action in enumerate(actions):
            try:
                _apply(self, action)
            except Exception as error:
                for done, item in zip(actions[: index + 1], saved, strict=False):
                    _restore(done, item)
                for key, shard in shards.items():
                    del shard.items[stream_lengths[key] :]
                if isinstance(error, MockValidationException):
                    raise
                failed: list[Reason] = [NO_REASON] * len(actions)
                failed[index] = (type(error).__name__, str(error), None)
                raise TransactionCanceledException(failed) from error
        return None


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return method(*args, **kwargs)

    call._serialised = True  # type: ignore[attr-defined]
    return call


def serialise_dynamodb() -> None:
    """Two-phase transactions, and every public operation of moto's DynamoDB backend that may write under
    LOCK (idempotent)."""
    if DynamoDBBackend.transact_write_items is _moto_transact_write_items:
        DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
    for name, member in list(vars(DynamoDBBackend).items()):
        if name.startswith("_") or name.startswith(READS) or not callable(member):
            continue
        if not getattr(member, "_serialised", False):
            setattr(DynamoDBBackend, name, _serialised(member))


def main(argv: list[str] | None = None) -> None:
    serialise_dynamodb()
    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
