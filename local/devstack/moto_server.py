"""`python -m devstack.moto_server`: moto's server, with DynamoDB's writes made atomic, as DynamoDB's are.

moto's server handles requests on threads, and its DynamoDB backend takes no lock. TransactWriteItems
deep-copies each table it touches, applies the actions, and on any failed condition puts the copies back,
so a transaction that fails while another request commits erases that commit: concurrent conditional
PATCHes of one session were acknowledged with the same version and one of them was lost (the fault suite's
history checker found it; tests/integration/test_devstack_services.py reproduces it in moto itself). Real
DynamoDB applies an item write or a transaction atomically and isolated.

Here every DynamoDB operation that can write runs under one process-wide lock (re-entrant: a transaction
calls the item operations), so a transaction's copy, check, apply or roll-back is never interleaved with
another write. Reads take no lock: a transaction copies a whole table (about 0.2 ms an item, stream
records included), and reads queued behind that copy came close to the functions' 1.5 s DynamoDB read
timeout. Other services (SQS long polls, Secrets Manager) are untouched.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main as moto_main

LOCK = threading.RLock()


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with LOCK:
            return method(*args, **kwargs)

    return call


READS = ("get_", "describe_", "list_", "query", "scan", "batch_get_item", "transact_get_items")


def serialise_dynamodb() -> None:
    """Wrap every public operation of moto's DynamoDB backend that may write in LOCK (idempotent)."""
    for name, member in list(vars(DynamoDBBackend).items()):
        if name.startswith("_") or not callable(member) or getattr(member, "_serialised", False):
            continue
        if name.startswith(READS):
            continue
        wrapped = _serialised(member)
        wrapped._serialised = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, wrapped)


def main(argv: list[str] | None = None) -> None:
    serialise_dynamodb()
    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
