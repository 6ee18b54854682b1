"""P2 counted I/O: what each route and event function calls, per request, counted as it happens.

Requests go through the local API Gateway (its authorizer, then the route's function) and the WebSocket
API; the stream and queue consumers get what the event source mappings deliver. Every function invocation
is metered on its own (bench/counting.py: botocore hooks, redis-server's command stats, the local E2B
API's request log). Each route is called once before it is counted, so the table shows a warm function's
request (a cold one also reads the E2B key secret, once per 5 minutes).

Goals (the design's, docs/architecture.md): DELETE exactly 1 DynamoDB write and 0 reads, 1 cache write, 1
SQS send; GET on a cache hit no DynamoDB call but the cache epoch's read, at most once a second per process;
create and PATCH no more than their transaction and the read PATCH needs; the others are printed. Every
HTTP route also takes its rate-limit tokens in exactly one Redis call (session_service.services.limits),
counted in a column of its own ("limit") and asked for by every goal as "+1 rate-limit call": it is neither a
cache
read nor a cache write. The API key authorizer reads the key's item on every decision, and its project's
limits at most once a minute per project and process: its first decision and a warm one are both rows.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.common import Verdict, print_table, say
from bench.counting import IO, Meter
from bench.stack import BenchStack, sample_event

SECTION = "P2 counted I/O"


@dataclass
class Step:
    function: str
    io: IO


@dataclass
class Expect:
    """Upper bounds (or exact counts) per request; None: not checked."""

    reads: int | None = None
    writes: int | None = None
    redis_writes: int | None = None  # the response cache's writes
    sqs: int | None = None
    exact: bool = False
    rate_limit: int | None = 1  # the limiter's Redis calls: always exact (0 would be an unprotected route)
    gets: dict[str, int] = field(default_factory=dict)  # exact GetItems per table name
    text: str = ""

    def holds(self, io: IO) -> bool:
        pairs = [
            (self.reads, io.dynamodb_reads),
            (self.writes, io.dynamodb_writes),
            (self.redis_writes, io.redis_writes),
            (self.sqs, sum(io.service("sqs").values())),
        ]
        bounded = all(want is None or (got == want if self.exact else got <= want) for want, got in pairs)
        gets = all(io.table_calls(table).get("GetItem", 0) == n for table, n in self.gets.items())
        return bounded and gets and (self.rate_limit is None or io.rate_limit_calls == self.rate_limit)


@dataclass
class Row:
    label: str
    function: str
    io: IO
    expect: Expect | None = None
    per: str = "request"
    verdict_text: str | None = None
    ok: bool | None = None


@dataclass
class Recording:
    """Meters every function invocation the stack makes while `capture()` is open."""

    stack: BenchStack
    meter: Meter
    steps: list[Step] = field(default_factory=list)

    def __post_init__(self) -> None:
        def around(function: str, run: Callable[[], Any]) -> Any:
            before = self.meter.snapshot()
            try:
                return run()
            finally:
                self.steps.append(Step(function, self.meter.since(before)))

        self.stack.recorder.around = around

    def close(self) -> None:
        """Stop metering: nothing after P2 pays for the hooks or the Redis monitor."""
        self.stack.recorder.around = lambda _, run: run()
        self.meter.close()

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[Step]]:
        start = len(self.steps)
        taken: list[Step] = []
        yield taken
        taken.extend(self.steps[start:])

    def direct(self, function: str, event: Any, env: dict[str, str] | None = None) -> tuple[Any, IO]:
        """Invoke a function without the gateway (event sources), metered."""
        before = self.meter.snapshot()
        result = self.stack.invoker.invoke(function, event, env)
        io = self.meter.since(before)
        self.steps.append(Step(function, io))
        return result, io


def _route_io(steps: list[Step], function: str) -> IO:
    found = [step.io for step in steps if step.function == function]
    if len(found) != 1:
        raise RuntimeError(f"expected one {function} invocation, got {[s.function for s in steps]}")
    return found[0]


def run(stack: BenchStack) -> list[Verdict]:
    recording = Recording(stack, Meter(stack.redis, stack.e2b))
    try:
        return _run(stack, recording)
    finally:
        recording.close()


def _run(stack: BenchStack, recording: Recording) -> list[Verdict]:
    rows: list[Row] = []
    called_e2b: set[str] = set()
    captured: dict[str, list[Step]] = {}  # each counted request's invocations, authorizer included

    def request(
        label: str,
        function: str,
        method: str,
        path: str,
        expect: Expect | None = None,
        status: int | None = None,
        warm: bool = True,
        **kwargs: Any,
    ) -> Any:
        if warm:  # the function's first request (clients, the E2B key) is not the one counted
            stack.call(method, path, **kwargs)
        with recording.capture() as steps:
            reply = stack.call(method, path, **kwargs)
        if status is not None and reply.status != status:
            raise RuntimeError(f"{label}: {reply.status} {reply.body}")
        rows.append(Row(label, function, _route_io(steps, function), expect))
        captured[label] = steps
        for step in steps:
            if step.io.e2b:
                called_e2b.add(step.function)
        return reply.body

    # --- sessions -------------------------------------------------------------------------------------
    # The authorizer's first decision in this process also reads the project's limits (at most once a
    # minute per project and process); the decision of the counted create below is a warm one.
    with recording.capture() as steps:
        created = stack.call("POST", "/v1/sessions", body={"user_id": "u-io", "config": {"model": "m"}})
    rows.append(_authorizer_row(stack, "authorizer (x-api-key), first decision", steps, first=True))
    session_id = created.body["id"]
    request(
        "POST /v1/sessions",
        "CreateSessionFunction",
        "POST",
        "/v1/sessions",
        Expect(reads=0, writes=1, text="1 transaction, 0 reads, +1 rate-limit call"),
        status=201,
        body={"user_id": "u-io", "config": {"model": "m"}},
    )
    rows.insert(1, _authorizer_row(stack, "authorizer (x-api-key), warm", captured["POST /v1/sessions"]))
    request(
        "POST /v1/sessions (new tag)",
        "CreateSessionFunction",
        "POST",
        "/v1/sessions",
        Expect(reads=1, writes=1, text="tag claim read + 1 transaction, +1 rate-limit call"),
        status=201,
        warm=False,
        body={"user_id": "u-io", "tag": f"t-{time.monotonic_ns()}"},
    )
    path = f"/v1/sessions/{session_id}"
    # A miss on a session this process has read before (its content key is held in memory)...
    stack.call("GET", path)  # warms the function, its connections and the session's key
    stack.redis.delete(_cache_key(stack, session_id))
    request(
        "GET /v1/sessions/{id} (cache miss)",
        "GetSessionFunction",
        "GET",
        path,
        Expect(reads=1, writes=0, redis_writes=1, text="1 GetItem, 1 fill, +1 rate-limit call"),
        status=200,
        warm=False,
    )
    # ...and on one it has not: its content key's item is read (then held CONTENT_KEY_CACHE_SECONDS).
    stranger = stack.create_session(config={"model": "m"}, metadata={"k": "v"})
    stack.redis.delete(_cache_key(stack, stranger))
    request(
        "GET /v1/sessions/{id} (cache miss, new session)",
        "GetSessionFunction",
        "GET",
        f"/v1/sessions/{stranger}",
        Expect(
            reads=2,
            writes=0,
            redis_writes=1,
            gets={stack.table("SessionsTable"): 1, stack.table("KeysTable"): 1},
            text="+ its key's GetItem (per session and process, 5 min), 1 fill, +1 rate-limit call",
        ),
        status=200,
        warm=False,
    )
    rows.append(_get_hits(stack, recording, path))
    request(
        "GET /v1/sessions",
        "ListSessionsFunction",
        "GET",
        "/v1/sessions",
        Expect(reads=16, writes=0, text="<= 16 Queries (one per shard), +1 rate-limit call"),
        status=200,
    )
    body = {"metadata": {"k": "v"}}
    request(
        "PATCH /v1/sessions/{id}",
        "UpdateSessionFunction",
        "PATCH",
        path,
        Expect(
            reads=1,
            writes=1,
            redis_writes=1,
            text="1 GetItem, 1 transaction, 1 cache write, +1 rate-limit call",
        ),
        status=200,
        body=body,
    )
    state = f"{path}/agent-state"
    stack.call(
        "PUT", state, body={"agent_state": {"step": 0}, "expected_version": 0}
    )  # warm, stamps activity
    request(
        "PUT .../agent-state",
        "PutAgentStateFunction",
        "PUT",
        state,
        Expect(
            reads=0,
            writes=1,
            redis_writes=1,
            exact=True,
            text="exactly 1 UpdateItem, 0 reads, 1 cache write, +1 rate-limit call",
        ),
        status=200,
        warm=False,
        body={"agent_state": {"step": 1}, "expected_version": 1},
    )
    request("POST .../tokens", "CreateTokenFunction", "POST", f"{path}/tokens", status=201, body={})
    token = stack.call("POST", f"{path}/tokens", body={}).body["token"]
    with recording.capture() as steps:
        stack.call("GET", path, token=token)
    rows.append(
        Row("authorizer (session token)", "AuthorizerFunction", _route_io(steps, "AuthorizerFunction"))
    )

    # --- the workbench, tools and MCP -----------------------------------------------------------------
    request(
        "POST .../execute (creates the sandbox)",
        "ExecuteFunction",
        "POST",
        f"{path}/execute",
        status=200,
        warm=False,
        body={"command": "true"},
    )
    request(
        "POST .../execute", "ExecuteFunction", "POST", f"{path}/execute", status=200, body={"command": "true"}
    )
    tool = sample_event("put_tool.json")
    request(
        "PUT /v1/tools/{name}",
        "PutToolFunction",
        "PUT",
        "/v1/tools/echo_args",
        status=200,
        body=json.loads(tool["body"]),
    )
    request("GET /v1/tools/{name}", "GetToolFunction", "GET", "/v1/tools/echo_args", status=200)
    request("GET /v1/tools", "ListToolsFunction", "GET", "/v1/tools", status=200)
    request(
        "GET .../tools?query=",
        "SessionToolsFunction",
        "GET",
        f"{path}/tools",
        status=200,
        query={"query": "echo"},
    )
    request(
        "POST .../tools/run_command/call",
        "CallToolFunction",
        "POST",
        f"{path}/tools/run_command/call",
        status=200,
        body={"arguments": {"command": "true"}},
    )
    mcp_headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"}
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    request(
        "POST .../mcp tools/list",
        "McpFunction",
        "POST",
        f"{path}/mcp",
        status=200,
        body=listing,
        headers=mcp_headers,
    )
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "run_command", "arguments": {"command": "true"}},
    }
    request(
        "POST .../mcp tools/call",
        "McpFunction",
        "POST",
        f"{path}/mcp",
        status=200,
        body=call,
        headers=mcp_headers,
    )
    request(
        "DELETE /v1/tools/{name}",
        "DeleteToolFunction",
        "DELETE",
        "/v1/tools/echo_args",
        status=200,
        warm=False,
    )

    # --- messages -------------------------------------------------------------------------------------
    message = {"content": {"role": "user", "text": "hi"}}
    request(
        "POST .../messages", "AppendMessageFunction", "POST", f"{path}/messages", status=201, body=message
    )
    request(
        "POST .../messages (local_id)",
        "AppendMessageFunction",
        "POST",
        f"{path}/messages",
        status=201,
        warm=False,
        body={**message, "local_id": f"l-{time.monotonic_ns()}"},
    )
    request(
        "GET .../messages",
        "ListMessagesFunction",
        "GET",
        f"{path}/messages",
        status=200,
        query={"after_seq": "0"},
    )

    # --- the live feed, the streams, DELETE and teardown ---------------------------------------------
    rows += _websocket(stack, recording)
    streams = _stream_mappings(stack)
    doomed = stack.create_session(config={"model": "m"})
    stack.call("POST", f"/v1/sessions/{doomed}/messages", body=message)
    stack.call("DELETE", f"/v1/sessions/{stack.create_session()}")  # warms the DELETE function
    request(
        "DELETE /v1/sessions/{id}",
        "DeleteSessionFunction",
        "DELETE",
        f"/v1/sessions/{doomed}",
        Expect(
            reads=0,
            writes=1,
            redis_writes=1,
            sqs=1,
            exact=True,
            text="exactly 1 write, 0 reads, 1 cache write, 1 send, +1 rate-limit call",
        ),
        status=200,
        warm=False,
    )
    rows += _drain_streams(stack, recording, streams)
    rows += _teardown(stack, recording, doomed)
    for step in recording.steps:
        if step.io.e2b:
            called_e2b.add(step.function)

    say(
        f"\n{SECTION} per request (warm function): DynamoDB r/w and calls, the response cache's Redis "
        "commands, the rate limiter's Redis calls (limit), other AWS, E2B"
    )
    table = []
    verdicts = []
    for row in rows:
        io = row.io
        ok = row.ok if row.ok is not None else (row.expect.holds(io) if row.expect else None)
        goal = row.verdict_text or (row.expect.text if row.expect else "-")
        table.append(
            [
                row.label,
                f"{io.dynamodb_reads}/{io.dynamodb_writes}",
                io.describe("dynamodb"),
                io.describe("redis"),
                str(io.rate_limit_calls),
                _aws_rest(io),
                io.describe("e2b"),
                goal,
                "" if ok is None else ("PASS" if ok else "FAIL"),
            ]
        )
        if ok is not None:
            verdicts.append(Verdict(SECTION, row.label, _summary(io), goal, ok))
    headers = ["route / function", "r/w", "DynamoDB", "Redis (cache)", "limit", "SQS, other AWS", "E2B"]
    print_table([*headers, "goal", ""], table)
    retried = {k: v for k, v in sum((r.io for r in rows), IO()).attempts.items()}
    calls = sum((r.io for r in rows), IO()).aws
    extra = {k: retried[k] - calls.get(k, 0) for k in retried if retried[k] > calls.get(k, 0)}
    say(f"  SDK retries in this run: {extra or 'none'}")

    from bench import sizes

    verdicts.append(sizes.e2b_attachment(called_e2b))
    return verdicts


def _cache_key(stack: BenchStack, session_id: str) -> str:
    from session_service.adapters.redis_cache import cache_key

    return cache_key(stack.project_id, session_id)


def _summary(io: IO) -> str:
    parts = [
        f"DynamoDB {io.dynamodb_reads}r/{io.dynamodb_writes}w",
        f"cache {sum(io.cache_commands.values())}",
        f"rate limit {io.rate_limit_calls}",
    ]
    if io.service("sqs"):
        parts.append(f"sqs {sum(io.service('sqs').values())}")
    return ", ".join(parts)


def _aws_rest(io: IO) -> str:
    sqs = io.describe("sqs")
    other = io.other_aws()
    return (
        " ".join(part for part in (sqs if sqs != "-" else "", other if other != "-" else "") if part) or "-"
    )


def _get_hits(stack: BenchStack, recording: Recording, path: str, seconds: float = 2.5) -> Row:
    """Cache hits for a few seconds: no DynamoDB call but the epoch's read, at most once a second."""
    stack.call("GET", path)  # fills the cache (or finds it filled)
    projects = stack.table("ProjectsTable")
    with recording.capture() as steps:
        started = time.monotonic()
        count = 0
        while time.monotonic() - started < seconds:
            stack.call("GET", path)
            count += 1
        elapsed = time.monotonic() - started
    route = [step.io for step in steps if step.function == "GetSessionFunction"]
    total = sum(route, IO())
    epoch_reads = total.table_calls(projects).get("GetItem", 0)
    others = total.dynamodb_reads + total.dynamodb_writes - epoch_reads
    ok = (
        others == 0
        and epoch_reads <= math.ceil(elapsed) + 1
        and total.redis.get("get", 0) == count
        and total.rate_limit_calls == count
    )
    per_request = IO(
        aws=_scaled(total.aws, count), tables=_scaled(total.tables, count), redis=_scaled(total.redis, count)
    )
    return Row(
        f"GET /v1/sessions/{{id}} (cache hit, {count} in {elapsed:.1f} s)",
        "GetSessionFunction",
        per_request,
        verdict_text=f"0 DynamoDB but the epoch read <= 1/s ({epoch_reads} epoch reads, {others} others), "
        "1 GET, +1 rate-limit call",
        ok=ok,
    )


def _authorizer_row(stack: BenchStack, label: str, steps: list[Step], *, first: bool = False) -> Row:
    """The key's GetItem on every decision; the project's limits' GetItem only on a process's first
    decision for the project (then at most once a minute)."""
    io = _route_io(steps, "AuthorizerFunction")
    key_reads = io.table_calls(stack.table("ApiKeysTable")).get("GetItem", 0)
    limit_reads = io.table_calls(stack.table("ProjectsTable")).get("GetItem", 0)
    ok = (
        key_reads == 1
        and limit_reads == (1 if first else 0)
        and io.dynamodb_reads == key_reads + limit_reads
        and io.dynamodb_writes == 0
        and not io.redis
    )
    goal = (
        "1 GetItem (key) + 1 GetItem (project limits, once a minute per project and process)"
        if first
        else "exactly 1 GetItem (key); limits held in memory"
    )
    return Row(label, "AuthorizerFunction", io, verdict_text=goal, ok=ok)


def _scaled(counter: Any, count: int) -> Any:
    from collections import Counter

    return Counter({k: round(v / count) for k, v in counter.items() if round(v / count)})


def _websocket(stack: BenchStack, recording: Recording) -> list[Row]:
    """Connect with the project's key, send one message, close: $connect, $default, $disconnect."""
    from websockets.sync.client import connect

    start = len(recording.steps)
    with connect(stack.websocket.url, additional_headers={"x-api-key": stack.api_key}) as socket:
        socket.send(json.dumps({"action": "ping"}))
        with contextlib.suppress(TimeoutError):
            socket.recv(timeout=2)
    deadline = time.monotonic() + 5  # $disconnect runs after the close, in the gateway's own time
    while time.monotonic() < deadline:
        if any(step.function == "WsDisconnectFunction" for step in recording.steps[start:]):
            break
        time.sleep(0.05)
    labels = {
        "WsConnectFunction": "WS $connect (x-api-key)",
        "WsDefaultFunction": "WS $default",
        "WsDisconnectFunction": "WS $disconnect",
    }
    rows = []
    for function, label in labels.items():
        found = [step for step in recording.steps[start:] if step.function == function]
        if found:
            rows.append(Row(label, function, found[-1].io))
    return rows


def _stream_mappings(stack: BenchStack) -> list[Any]:
    from devstack.pollers import DynamoDbStreamEventSourceMapping

    mappings = []
    for name in ("CacheInvalidatorFunction", "NotifierFunction"):
        for source in stack.template.function(name).streams:
            mapping = DynamoDbStreamEventSourceMapping(
                stack.recorder,
                name,
                stream_arn=stack.resources.attribute(source.table_id, "StreamArn"),
                region="us-east-1",
                endpoint_url=stack.moto.url,
                batch_size=source.batch_size,
                starting_position="LATEST",
                poll_interval=0.0,
                max_backoff=0.0,
                report_batch_item_failures="ReportBatchItemFailures" in source.function_response_types,
            )
            mapping.poll_once()  # opens the shard iterators at LATEST: only what happens from now on
            mappings.append((name, source.table_id, mapping))
    return mappings


def _drain_streams(stack: BenchStack, recording: Recording, mappings: list[Any]) -> list[Row]:
    rows = []
    for name, table, mapping in mappings:
        with recording.capture() as steps:
            delivered = 0
            for _ in range(20):
                result = mapping.poll_once()
                delivered += result.delivered
                if not result.delivered:
                    break
        total = sum((step.io for step in steps if step.function == name), IO())
        if delivered:
            rows.append(
                Row(
                    f"{name} ({delivered} {table} records, per batch)",
                    name,
                    _per(total, max(1, len([s for s in steps if s.function == name]))),
                )
            )
    return rows


def _per(io: IO, count: int) -> IO:
    return IO(
        aws=_scaled(io.aws, count),
        tables=_scaled(io.tables, count),
        redis=_scaled(io.redis, count),
        e2b=_scaled(io.e2b, count),
    )


def _teardown(stack: BenchStack, recording: Recording, session_id: str) -> list[Row]:
    """The DELETE's message, as the SQS event source mapping hands it to TeardownFunction; then a sweep."""
    from devstack.pollers import sqs_record

    messages = []
    for _ in range(10):
        got = stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages += got.get("Messages", [])
        if not got.get("Messages"):
            break
    ours = [m for m in messages if session_id in m["Body"]]
    arn = stack.resources.attribute("TeardownQueue", "Arn")
    rows = []
    if ours:
        event = {"Records": [sqs_record(ours[0], arn, "us-east-1")]}
        _, io = recording.direct("TeardownFunction", event)
        rows.append(
            Row("TeardownFunction (1 message: no sandbox, 1 message, 0 tokens)", "TeardownFunction", io)
        )
    _, io = recording.direct("SweeperFunction", sample_event("sweeper_schedule.json"))
    rows.append(Row("SweeperFunction (one run, nothing pending)", "SweeperFunction", io))
    return rows
