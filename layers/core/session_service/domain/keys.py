"""Partition keys: how items spread over DynamoDB partitions, so that no key takes more than a bounded share
of the traffic (docs/architecture.md, "Keys and their load"; bench/key_load.py models it).

A DynamoDB partition serves at most 1,000 write and 3,000 read units a second, and an index that cannot keep
up throttles its table's writes. So nothing whose write rate grows with a tenant's size shares one key:

- a project's sessions are spread over SESSION_SHARDS partitions by a hash of the session id. A GetItem still
  addresses a session directly (the shard is computed from its id), and the project stays in every key, so
  tenant isolation holds by construction. Listing a project (or a user, or what changed) merges the shards.
- the sweeper's sparse index of pending teardowns is spread over TEARDOWN_SHARDS partitions.
- a tag claim is its own partition (not the project's), and so is each copy of the cache epoch.

The shard counts are part of the stored keys: changing one later needs a migration (re-keying every
session), so they are sized for the model's load with room to spare rather than made a parameter.
"""

from __future__ import annotations

import hashlib

SESSION_SHARDS = 16
TEARDOWN_SHARDS = 32


def shard_of(value: str, shards: int) -> int:
    """A stable, uniform shard for any id (not Python's per-process hash())."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=4).digest(), "big") % shards


def session_partition(project_id: str, session_id: str) -> str:
    return f"{project_id}#{shard_of(session_id, SESSION_SHARDS):02d}"


def project_partitions(project_id: str) -> list[str]:
    return [f"{project_id}#{shard:02d}" for shard in range(SESSION_SHARDS)]


def user_partition(project_id: str, user_id: str, session_id: str) -> str:
    return f"{project_id}#{user_id}#{shard_of(session_id, SESSION_SHARDS):02d}"


def user_partitions(project_id: str, user_id: str) -> list[str]:
    return [f"{project_id}#{user_id}#{shard:02d}" for shard in range(SESSION_SHARDS)]


def pending_partition(session_id: str) -> str:
    return f"pending#{shard_of(session_id, TEARDOWN_SHARDS):02d}"


def pending_partitions() -> list[str]:
    return [f"pending#{shard:02d}" for shard in range(TEARDOWN_SHARDS)]


def updated_key(updated_at: str, session_id: str) -> str:
    """The by_updated index's sort key: time order, made unique by the session id."""
    return f"{updated_at}#{session_id}"


def tag_partition(project_id: str, tag: str) -> str:
    return f"{project_id}#tag#{tag}"


def audit_partition(project_id: str, session_id: str) -> str:
    return f"{project_id}#{session_id}"


CATALOG_VERSION_COPIES = 8


def catalog_version_partition(project_id: str, copy: int) -> str:
    """One of the copies of a project's tool-catalog version: every tool call reads one (strongly
    consistent), so they are spread; a catalog change moves them all in one transaction."""
    return f"{project_id}#catalog#{copy}"


def project_key_partition(project_id: str) -> str:
    """A project's key in the keys table: read once per process every few minutes (content_keys caches it)."""
    return f"project#{project_id}"


def session_key_partition(project_id: str, session_id: str) -> str:
    """A session's key in the keys table: its own partition."""
    return f"session#{project_id}#{session_id}"
