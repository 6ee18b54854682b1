"""Lambda SnapStart (template parameter SnapStart=true): what runs before the snapshot and after a restore.

With SnapStart, Lambda initialises a published version once, snapshots the execution environment and
starts later environments from copies of that snapshot. Two things follow, and the hooks here handle them:

- What init leaves undone, every restored copy pays on its first request. Before the snapshot,
  `Container.warm()` imports what this function's requests import and builds its clients and services
  (botocore loads its service models then). It opens no connection: a socket in the snapshot would be
  shared by every copy and dead after a restore, so connections are made on the first request, as always.
- Whatever was random at init is the same in every copy. Python's `random` is seeded once, at import, from
  os.urandom: botocore's retry jitter, our write-retry jitter and the tool catalog's copy choice draw from
  it, so every copy would back off in step and read the same partition. After each restore it is seeded
  again; the ids' monotonic state is forgotten. Ids, tokens, keys and request tokens come from `secrets`
  and `uuid4` (os.urandom on every call), which no snapshot can capture; the cache epoch picks its copy at
  its first read (not from the pid, which every copy shares).

The hooks are registered only when Lambda initialises for a snapshot (it sets
AWS_LAMBDA_INITIALIZATION_TYPE=snap-start); `snapshot_restore_py` ships with the Lambda runtime and is
imported only then, so nothing changes for an ordinary cold start, the tests or the dev stack.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from session_service.domain import ids

SNAP_START = "snap-start"


def wanted() -> bool:
    return os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == SNAP_START


def register(warm: Callable[[], None]) -> bool:
    """Register the hooks with the runtime's snapshot_restore_py; False when it is not there."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(warm)
    register_after_restore(after_restore)
    return True


def after_restore() -> None:
    """Make this restored copy's randomness its own."""
    random.seed()  # from os.urandom
    ids.forget_last()
