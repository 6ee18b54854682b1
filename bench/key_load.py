"""Key-load model: the hottest partition key of every table and index at a synthetic load, as a fraction of
DynamoDB's per-partition limits (1,000 write units and 3,000 read units a second). A model, not a load test.

It reads the tables' and indexes' key schemas from template.yaml and builds every item with the code's own
key functions (session_service.domain.keys), so it cannot drift from either. One simulated second of a tool
router's traffic: OPS operations over TENANTS tenants, Zipf-distributed so that the largest tenant has
LARGEST_SHARE of the traffic, in the mix below. Each operation writes and reads the items the code writes
and reads; a write of an item also writes every index whose key attributes the item carries (an item without
an index's hash or range key is not in that sparse index; all our indexes project ALL or INCLUDE, so any
change of an indexed item is counted as an index write). Items are taken as <= 1 KB (one write unit; a
strongly consistent read of up to 4 KB is one read unit, an eventually consistent one half).

Besides the mix (a share of OPS each), the model has what follows from it or runs beside it: a session token
per created session (purged by teardown), activity stamps (at most one a minute per session), Idempotency-Key
records on a share of the routes that take one, live-feed connections, tool-catalog changes (and the catalog
re-reads they cause in every instance), and API key changes (admin). Their rates are the constants below.

"before" is the key layout of commit 0b479a6 (one partition per project, one constant partition for the
pending-teardown index, tag claims in the project's partition), read from that commit's template.yaml.

    python bench/key_load.py          # also part of `make bench`
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import itertools
import json
import random
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.template import Template, load_yaml
from session_service.domain import keys
from session_service.services.cache_epoch import CacheEpoch  # noqa: F401 - the copies below are its items
from session_service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
OPS = 100_000
TENANTS = 10_000
LARGEST_SHARE = 0.10
GOAL = 0.5
WRITE_LIMIT, READ_LIMIT = 1000.0, 3000.0
BEFORE_COMMIT = "0b479a6"

# The operation mix of a tool-router (fractions of OPS) and the traffic's shape.
MIX = {
    "get": 0.20,
    "execute": 0.10,
    "tool_call": 0.10,  # REST or MCP: the catalog version, the session, a usage record
    "append": 0.15,  # a message
    "list_messages": 0.03,
    "patch": 0.05,
    "list": 0.03,
    "changed_since": 0.02,
    "create": 0.04,
    "create_tagged": 0.03,
    "delete": 0.05,
    "authorize": 0.20,  # requests whose decision API Gateway did not have cached (half by session token)
}
STREAM_BATCH = 100  # records per notifier invocation: connections are read once per project per batch
CACHE_HIT_RATIO = 0.8  # GETs served by Redis
EXECUTES_PER_SANDBOX = 10  # an execute creates (and attaches) a sandbox once per this many
CONTAINERS = 2_000  # concurrent function instances at this load: each re-reads the cache epoch once a second
ACTIVE_USERS_PER_TENANT = 50
# What follows from the mix, or runs beside it:
STAMP_EVERY = 5  # a busy session's execute/append stamps last_active_at on 1 in 5 (at most once a minute)
IDEMPOTENT_SHARE = 0.5  # of creates, executes, tool calls and appends, carrying an Idempotency-Key
IDEMPOTENT_ROUTES = ("create", "create_tagged", "execute", "tool_call", "append")
FEED_CONNECTS = 1_000  # live-feed connections opened (and as many closed) a second, half by session token
TOOL_CHANGES = 1  # tool PUTs and DELETEs a second over all tenants (the largest: 0.1/s, 6 a minute)
CATALOG_READ_UNITS = 5.0  # a catalog re-query, strongly consistent: 20 tools of <= 1 KB
KEY_CHANGES = 1  # API keys issued or revoked a second over all tenants (session-admin)
AT = "2026-11-23T00:00:00.000000Z"


@dataclass
class Load:
    """Write and read units per (table or index, partition key value)."""

    writes: Counter[tuple[str, str]] = field(default_factory=Counter)
    reads: Counter[tuple[str, str]] = field(default_factory=Counter)


class Schema:
    """Which attribute is the hash key of each table and index, from a template."""

    def __init__(self, template: Template) -> None:
        self.tables: dict[str, str] = {}
        self.indexes: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
        for logical_id, props in template.tables.items():
            self.tables[logical_id] = _hash_key(props["KeySchema"])
            for index in props.get("GlobalSecondaryIndexes") or []:
                key_names = [part["AttributeName"] for part in index["KeySchema"]]
                self.indexes[logical_id].append(
                    (index["IndexName"], [_hash_key(index["KeySchema"]), *key_names])
                )

    def write(self, load: Load, table: str, item: dict[str, str], units: float = 1.0) -> None:
        if table not in self.tables:
            return  # a table this layout did not have
        load.writes[(table, item[self.tables[table]])] += units
        for index, (hash_key, *key_names) in self.indexes[table]:
            if all(name in item for name in key_names):  # a sparse index holds only items with its keys
                load.writes[(f"{table}/{index}", item[hash_key])] += units

    def read(
        self, load: Load, table: str, partition: str, units: float = 1.0, index: str | None = None
    ) -> None:
        if table not in self.tables or (index and index not in dict(self.indexes[table])):
            return  # a table or index this layout did not have
        load.reads[(f"{table}/{index}" if index else table, partition)] += units


def _hash_key(key_schema: list[dict[str, str]]) -> str:
    return next(part["AttributeName"] for part in key_schema if part["KeyType"] == "HASH")


# --- the two layouts: the items an operation touches, as the code builds them -----------------------------


class Layout:
    name = "after"
    api_key_read_units = 0.5  # adapters.dynamodb.api_keys reads eventually consistent

    def session(
        self, project: str, session_id: str, user: str, *, pending: bool = False, active: bool = False
    ) -> dict[str, str]:
        """The session's key attributes; `pending`: a tombstone still to tear down, `active`: one with an
        activity stamp (the sparse indexes hold only items with their keys)."""
        item = {
            "pk": keys.session_partition(project, session_id),
            "session_id": session_id,
            "user_key": keys.user_partition(project, user, session_id),
            "updated_key": keys.updated_key(AT, session_id),
        }
        if pending:
            item["teardown_pending"] = keys.pending_partition(session_id)
            item["deleted_at"] = AT
        if active:
            item["active_key"] = keys.updated_key(AT, session_id)
        return item

    def tag_claim(self, project: str, tag: str) -> dict[str, str]:
        return {"pk": keys.tag_partition(project, tag), "sk": "tag"}

    def project_partitions(self, project: str) -> list[str]:
        return keys.project_partitions(project)

    def user_partitions(self, project: str, user: str) -> list[str]:
        return keys.user_partitions(project, user)

    def pending_partitions(self) -> list[str]:
        return keys.pending_partitions()

    def epoch_partitions(self) -> list[str]:
        return [f"_cache_epoch#{copy}" for copy in range(Settings().cache_epoch_copies)]

    def content_keys(self) -> bool:
        return True

    def activity_stamps(self) -> bool:
        return True

    def session_tokens(self) -> bool:
        return True

    def project_limits(self) -> bool:
        return True


class BeforeLayout(Layout):
    """Commit 0b479a6: HASH project_id on the table and by_updated, user_key = project#user, a constant
    "pending" partition for the sweeper's index, tag claims under the project's own key."""

    name = "before"
    api_key_read_units = 1.0  # strongly consistent then

    def session(
        self, project: str, session_id: str, user: str, *, pending: bool = False, active: bool = False
    ) -> dict[str, str]:
        item = {
            "project_id": project,
            "session_id": session_id,
            "user_key": f"{project}#{user}",
            "updated_at": AT,
        }
        if pending:
            item["teardown_pending"] = "pending"
            item["deleted_at"] = AT
        return item  # no activity stamp then

    def tag_claim(self, project: str, tag: str) -> dict[str, str]:
        return {"project_id": project, "sk": f"tag#{tag}"}

    def project_partitions(self, project: str) -> list[str]:
        return [project]

    def user_partitions(self, project: str, user: str) -> list[str]:
        return [f"{project}#{user}"]

    def pending_partitions(self) -> list[str]:
        return ["pending"]

    def epoch_partitions(self) -> list[str]:
        return []  # no cache epoch then

    def content_keys(self) -> bool:
        return False  # no keys table then

    def activity_stamps(self) -> bool:
        return False  # no last_active_at then

    def session_tokens(self) -> bool:
        return False  # no tokens table then

    def project_limits(self) -> bool:
        return False  # no rate limits then


# --- the workload ------------------------------------------------------------------------------------------


@functools.cache
def zipf_tenants(count: int, largest_share: float) -> tuple[list[str], list[float]]:
    """Tenant ids and cumulative weights of a Zipf law giving the first tenant `largest_share`."""
    low, high = 0.0, 4.0
    for _ in range(60):
        exponent = (low + high) / 2
        weights = [rank**-exponent for rank in range(1, count + 1)]
        share = weights[0] / sum(weights)
        low, high = (exponent, high) if share < largest_share else (low, exponent)
    total = sum(weights)
    cumulative, running = [], 0.0
    for weight in weights:
        running += weight / total
        cumulative.append(running)
    return [f"prj_{rank:026d}" for rank in range(count)], cumulative


def tenant(rng: random.Random) -> str:
    tenants, cumulative = zipf_tenants(TENANTS, LARGEST_SHARE)
    return tenants[min(bisect.bisect(cumulative, rng.random()), TENANTS - 1)]


def tenant_shares() -> Iterator[tuple[str, float]]:
    """Every tenant with its expected share of the traffic (for the rare operations, too rare to sample)."""
    tenants, cumulative = zipf_tenants(TENANTS, LARGEST_SHARE)
    shares = [cumulative[0], *(high - low for low, high in itertools.pairwise(cumulative))]
    yield from zip(tenants, shares, strict=True)


def operations(rng: random.Random) -> Iterator[tuple[str, str]]:
    for operation, share in MIX.items():
        for _ in range(int(OPS * share)):
            yield operation, tenant(rng)


def new_session_id(rng: random.Random) -> str:
    """A session id's shape (ses_ + 26 characters) from the model's seed; its shard is a hash of it."""
    return f"ses_{rng.getrandbits(104):026x}"


def idempotency_record(operation: str, project: str, key: str) -> dict[str, str]:
    """Powertools' record id as adapters.idempotency configures it: the route, then the SHA-256 of
    [project_id, key] (one partition per key: only a client's retries of one request share it)."""
    digest = hashlib.sha256(json.dumps([project, key]).encode()).hexdigest()
    return {"id": f"{operation}#{digest}"}


def simulate(layout: Layout, schema: Schema, seed: int = 7) -> Load:
    rng = random.Random(seed)
    extra = random.Random(seed + 1)  # the draws of what follows from the mix: the mix's own stay as they were
    session_ids = random.Random(seed + 2)  # seeded too, so the figures are the same on every run
    load = Load()
    events: list[tuple[str, str]] = []  # the project and session of every stream record the notifier reads
    tool_calls: Counter[str] = Counter()
    s = "SessionsTable"
    for operation, project in operations(rng):
        session_id = new_session_id(session_ids)
        user = f"user-{rng.randrange(ACTIVE_USERS_PER_TENANT)}"
        item = layout.session(project, session_id, user)
        home = item[schema.tables[s]]
        conversation = keys.audit_partition(project, session_id)
        token = {"token_hash": f"token-of-{session_id}", "token_id": "tok", "session_key": conversation}
        if operation == "get":
            if rng.random() > CACHE_HIT_RATIO:
                schema.read(load, s, home)
        elif operation == "execute":
            schema.read(load, s, home)
            schema.write(load, "AuditTable", {"session_key": conversation})
            if rng.random() < 1 / EXECUTES_PER_SANDBOX:
                schema.write(load, s, item)  # the fence records the sandbox
        elif operation == "patch":
            schema.read(load, s, home)
            schema.write(load, s, item)
            schema.write(load, "AuditTable", {"session_key": conversation})
        elif operation in ("create", "create_tagged"):
            schema.write(load, s, item)
            schema.write(load, "AuditTable", {"session_key": conversation})
            if layout.content_keys():  # the session's key, in the create transaction (2 units per item)
                schema.write(load, "KeysTable", {"pk": keys.session_key_partition(project, session_id)}, 2.0)
            if operation == "create_tagged":
                claim = layout.tag_claim(project, f"tag-{rng.randrange(1_000_000)}")
                schema.read(load, "ProjectsTable", claim[schema.tables["ProjectsTable"]])
                schema.write(load, "ProjectsTable", claim)
            if layout.session_tokens():
                # Its agent's session token: one transaction (the session checked, the token and its audit
                # entry put; 2 units per item).
                schema.read(load, s, home, 2.0)
                schema.write(load, "TokensTable", token, 2.0)
                schema.write(load, "AuditTable", {"session_key": conversation}, 2.0)
        elif operation == "delete":
            tombstone = layout.session(project, session_id, user, pending=True)
            schema.write(load, s, tombstone)
            schema.read(load, s, home)  # teardown reads the tombstone...
            schema.write(load, s, tombstone)  # ...and completes: its pending marker leaves the index
            if layout.content_keys():  # teardown deletes the session's key first
                schema.write(load, "KeysTable", {"pk": keys.session_key_partition(project, session_id)})
            if layout.session_tokens():  # and purges its token
                schema.read(load, "TokensTable", conversation, 0.5, index="by_session")
                schema.write(load, "TokensTable", token)
        elif operation == "list":  # one page: every shard's first page, about one read unit each
            for partition in layout.project_partitions(project):
                schema.read(load, s, partition)
        elif operation == "changed_since":
            for partition in layout.project_partitions(project):
                schema.read(load, s, partition, 0.5, index="by_updated")
        elif operation == "authorize":
            if rng.random() < 0.5:  # One key per tenant: the worst case for a key's item.
                schema.read(load, "ApiKeysTable", f"key-of-{project}", layout.api_key_read_units)
            else:  # a session token: its own item (strongly consistent)
                schema.read(load, "TokensTable", f"token-of-{session_id}")
        elif operation == "tool_call":
            schema.read(load, s, home)
            copy = rng.randrange(keys.CATALOG_VERSION_COPIES)
            schema.read(load, "ToolsTable", keys.catalog_version_partition(project, copy))
            schema.write(load, "AuditTable", {"session_key": conversation})
            tool_calls[project] += 1
        elif operation in ("append", "list_messages"):
            schema.read(load, s, home)
            schema.read(load, "MessagesTable", conversation)
            if operation == "append":  # one transaction: 2 units per item; the session is only checked
                schema.read(load, s, home, 2.0)
                schema.write(load, "MessagesTable", {"session_key": conversation}, 6.0)
                events.append((project, conversation))
        if operation in ("create", "create_tagged", "patch", "delete"):
            events.append((project, conversation))
        stamps = layout.activity_stamps() and operation in ("execute", "append")
        if stamps and extra.random() < 1 / STAMP_EVERY:
            # The activity stamp, at most once a minute per session (session_service.services.activity).
            schema.write(load, s, layout.session(project, session_id, user, active=True))
        if operation in IDEMPOTENT_ROUTES and extra.random() < IDEMPOTENT_SHARE:
            # A conditional PutItem (in progress), then an UpdateItem (the response): one key, two writes.
            record = idempotency_record(operation, project, f"key-{extra.getrandbits(64)}")
            schema.write(load, "IdempotencyTable", record)
            schema.write(load, "IdempotencyTable", record)
    # The notifier reads a project's connections once per batch of stream records it is in, and each
    # session's token connections.
    for project, count in Counter(project for project, _ in events).items():
        for _ in range(max(1, count // STREAM_BATCH)):
            schema.read(load, "ConnectionsTable", project, 0.5, index="by_project")
    for session_scope in {scope for _, scope in events}:
        schema.read(load, "ConnectionsTable", session_scope, 0.5, index="by_session")
    # Live-feed connections: a put at $connect, a delete at $disconnect; the sparse index of its kind.
    for number in range(FEED_CONNECTS):
        project = tenant(extra)
        connection = {"connection_id": f"conn-{number}"}
        if number % 2:
            connection["project_scope"] = project
        else:
            connection["session_scope"] = keys.audit_partition(project, new_session_id(session_ids))
        schema.write(load, "ConnectionsTable", connection, 2.0)
    # Rare operations, at their expected rate per tenant.
    for project, share in tenant_shares():
        changes = TOOL_CHANGES * share
        # A tool PUT reads the tool, then one transaction puts it and moves every copy of the catalog
        # version; each instance serving the tenant's tool calls then re-queries the catalog once.
        schema.read(load, "ToolsTable", project, changes)
        schema.write(load, "ToolsTable", {"pk": project}, 2.0 * changes)
        for copy in range(keys.CATALOG_VERSION_COPIES):
            schema.write(
                load, "ToolsTable", {"pk": keys.catalog_version_partition(project, copy)}, 2.0 * changes
            )
        rereads = min(float(tool_calls[project]), changes * CONTAINERS)
        schema.read(load, "ToolsTable", project, rereads * CATALOG_READ_UNITS)
        # An API key issued (a conditional put) or revoked (found in by_project, then updated).
        key_changes = KEY_CHANGES * share
        api_key = {"key_hash": f"key-of-{project}", "project_id": project, "key_id": "key"}
        schema.write(load, "ApiKeysTable", api_key, key_changes)
        schema.read(load, "ApiKeysTable", project, 0.5 * key_changes, index="by_project")
    # The sweeper: every 5 minutes, one query per shard of its index (negligible, but it is a key).
    for partition in layout.pending_partitions():
        schema.read(load, s, partition, 1 / 300, index="pending_teardown")
    # Every function instance re-reads its copy of the cache epoch once a second.
    copies = layout.epoch_partitions()
    for container in range(CONTAINERS if copies else 0):
        schema.read(load, "ProjectsTable", copies[container % len(copies)])
    if layout.content_keys():
        # Session keys are their own partitions, read on a process's key-cache miss (at most one read per
        # session per process every CONTENT_KEY_CACHE_SECONDS). A project's key is one item: every instance
        # that serves the project reads it once per CONTENT_KEY_CACHE_SECONDS; the worst case is every
        # instance serving the largest tenant.
        ttl = Settings().content_key_cache_seconds
        largest = zipf_tenants(TENANTS, LARGEST_SHARE)[0][0]
        schema.read(load, "KeysTable", keys.project_key_partition(largest), CONTAINERS / ttl)
    if layout.project_limits():
        # The authorizer reads a project's record (its rate limits, strongly consistent) at most once per
        # PROJECT_LIMITS_TTL_SECONDS per instance; at worst every instance serves the largest tenant.
        largest = zipf_tenants(TENANTS, LARGEST_SHARE)[0][0]
        schema.read(load, "ProjectsTable", largest, CONTAINERS / Settings().project_limits_ttl_seconds)
    return load


def hottest(load: Load) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = defaultdict(lambda: {"write": (0.0, ""), "read": (0.0, "")})
    for (name, partition), units in load.writes.items():
        table[name]["write"] = max(table[name]["write"], (units / WRITE_LIMIT, partition))
    for (name, partition), units in load.reads.items():
        table[name]["read"] = max(table[name]["read"], (units / READ_LIMIT, partition))
    return dict(sorted(table.items()))


def before_template() -> Template | None:
    try:
        text = subprocess.run(
            ["git", "show", f"{BEFORE_COMMIT}:template.yaml"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return Template(load_yaml(text), ROOT)


def report(label: str, rows: dict[str, dict[str, Any]], out: Callable[[str], None]) -> bool:
    out(f"\n{label}: the hottest partition key of each table and index,")
    out(f"  as a fraction of the per-partition limit (goal <= {GOAL})")
    out(f"  {'table / index':44} {'writes':>8} {'reads':>8}  hottest key")
    ok = True
    for name, row in rows.items():
        (write, write_key), (read, read_key) = row["write"], row["read"]
        passed = write <= GOAL and read <= GOAL
        ok &= passed
        key = write_key if write >= read else read_key
        out(f"  {name:44} {write:8.3f} {read:8.3f}  {'PASS' if passed else 'FAIL'}  {key[:40]}")
    return ok


def main(out: Callable[[str], None] = print) -> bool:
    out(f"Key-load model: {OPS:,} operations/s over {TENANTS:,} tenants (Zipf, largest {LARGEST_SHARE:.0%}),")
    out("  mix " + ", ".join(f"{name} {share:.0%}" for name, share in MIX.items()))
    out(
        f"  and beside it: a session token per create, an activity stamp on 1 in {STAMP_EVERY} executes and "
        f"appends, Idempotency-Key records on {IDEMPOTENT_SHARE:.0%} of {', '.join(IDEMPOTENT_ROUTES)}, "
        f"{FEED_CONNECTS:,} feed connections/s, {TOOL_CHANGES} tool change/s (each re-read by every "
        f"instance), {KEY_CHANGES} API key change/s, the authorizer's project-limits read"
    )
    legacy = before_template()
    if legacy is not None:
        report(
            "before (commit " + BEFORE_COMMIT + ")", hottest(simulate(BeforeLayout(), Schema(legacy))), out
        )
    ok = report(
        "after (template.yaml + session_service.domain.keys)",
        hottest(simulate(Layout(), Schema(Template.load(ROOT / "template.yaml")))),
        out,
    )
    out(
        "  ApiKeysTable assumes one key per tenant and API Gateway's decision cache missing 20 % of requests;"
    )
    out("  AuthorizerCacheTtlSeconds=0 sends every request of a key to one item (see docs/operations.md).")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
