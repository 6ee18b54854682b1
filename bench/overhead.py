"""P3 handler overhead, and the other "this against that" rows: pairs of calls timed interleaved in one run.

A row is a function `(stack) -> context manager yielding a Comparison`: it sets up what it needs (sessions,
a handler with its environment held for the whole row), yields the two `Case`s and a goal on their p50s,
and cleans up after the timing. A goal is a ratio of the p50s or a difference, taken in the calling thread's
CPU time (the wall clock on a shared machine also counts waiting for moto and for a CPU; the wall figures
are printed beside it). P3 is a ratio (issue 29): the handler's CPU over the CPU of the same raw calls it
must make, back to back in one run, so a slower or faster machine gives the same verdict (an absolute
budget in milliseconds flipped on a machine 3x slower); the milliseconds are printed beside it. To add a
row, write one and list it in `ROWS`, e.g.

    @contextlib.contextmanager
    def append_encryption(stack):
        session_id = stack.create_session()
        event = stack.http_event("append_message.json", f"/v1/sessions/{session_id}/messages", session_id)
        def append(env):
            return lambda _: stack.invoker.invoke("AppendMessageFunction", event, env)
        yield Comparison("append, encryption on vs off", "ratio", 1.2,
                         Case("on", append({"MESSAGE_ENCRYPTION": "true"})),
                         Case("off", append({"MESSAGE_ENCRYPTION": "false"})))

The events carry the API key authorizer's context (`BenchStack.http_event`: the project, the credential
and the project's limits), so every handler takes its rate-limit tokens in one Redis call, as behind API
Gateway; the raw side of a handler-against-raw-calls row makes that call too (`_raw_rate_limit`).

Two environments of one function take turns in this process, so such a row calls `invoker.invoke` (which
applies the environment on each call, on both sides alike); a handler-against-raw-calls row holds one
environment for the whole row with `stack.handler(...)`, so that only the handler is timed.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bench.common import Case, Samples, Verdict, paired, paired_difference, print_table, say
from bench.counting import Meter
from bench.stack import BenchStack, create_sandboxes, sample_event

SECTION_P3 = "P3 handler overhead"
SECTION_ROWS = "routes compared"
ROUNDS = 300


@dataclass
class Comparison:
    name: str
    kind: str  # "diff": a - b <= goal ms; "ratio": a / b <= goal
    goal: float | None
    a: Case
    b: Case
    rounds: int = ROUNDS
    section: str = SECTION_ROWS
    stat: str = "p50"  # or "mean" (when a rare call, like the epoch read, is part of the cost)
    # Computed after the timing: a line for the report and any further verdicts (e.g. a count).
    note: Callable[[Samples, Samples], tuple[str, list[Verdict]]] | None = None


Row = Callable[[BenchStack], contextlib.AbstractContextManager[Comparison]]


# --- helpers ---------------------------------------------------------------------------------------------


def _item_key(stack: BenchStack, session_id: str) -> dict[str, Any]:
    from session_service.domain import keys

    return {
        "pk": {"S": keys.session_partition(stack.project_id, session_id)},
        "session_id": {"S": session_id},
    }


def _cache_key(stack: BenchStack, session_id: str) -> str:
    from session_service.adapters.redis_cache import cache_key

    return cache_key(stack.project_id, session_id)


def _revive(stack: BenchStack, session_id: str) -> None:
    """Undo a DELETE in the store and the cache, so that the same session can be deleted again (untimed)."""
    stack.ddb.update_item(
        TableName=stack.table("SessionsTable"),
        Key=_item_key(stack, session_id),
        UpdateExpression="REMOVE deleted_at, delete_token, teardown_state, teardown_pending, expires_at",
    )
    stack.redis.delete(_cache_key(stack, session_id))


def _raw_rate_limit(stack: BenchStack) -> Callable[[], Any]:
    """The route limiter's one Redis call made with redis-py directly: the token-bucket script on the
    caller's general bucket, with the limit the authorizer's context carries."""
    from session_service.adapters.redis_limits import _TAKE, bucket_key
    from session_service.services.auth import CREDENTIAL_CONTEXT_KEY, RATE_LIMIT_CONTEXT_KEY
    from session_service.services.limits import GENERAL

    context = stack.authorizer_context
    script = stack.redis_text.register_script(_TAKE)
    keys = [bucket_key(stack.project_id, str(context[CREDENTIAL_CONTEXT_KEY]), GENERAL)]
    args = [int(context[RATE_LIMIT_CONTEXT_KEY])]
    return lambda: script(keys=keys, args=args)


def _ok(reply: dict[str, Any], status: int = 200) -> dict[str, Any]:
    if reply["statusCode"] != status:
        raise RuntimeError(f"expected {status}: {reply}")
    return reply


def _raw_tombstone(stack: BenchStack, session_id: str, take: Callable[[], Any]) -> None:
    """DELETE's calls made with boto3 and redis-py directly: the rate limiter's EVALSHA, the conditional
    UpdateItem, SET "!", SendMessage."""
    from session_service.domain import keys

    take()
    at = "2026-01-01T00:00:00.000000Z"
    token = uuid.uuid4().hex
    stack.ddb.update_item(
        TableName=stack.table("SessionsTable"),
        Key=_item_key(stack, session_id),
        UpdateExpression="SET deleted_at = :t, updated_at = :t, updated_key = :k, delete_token = :d, "
        "teardown_state = :s, teardown_pending = :p, expires_at = :e",
        ConditionExpression="attribute_exists(session_id) "
        "AND (attribute_not_exists(deleted_at) OR delete_token = :d)",
        ExpressionAttributeValues={
            ":t": {"S": at},
            ":k": {"S": keys.updated_key(at, session_id)},
            ":d": {"S": token},
            ":s": {"S": "pending"},
            ":p": {"S": keys.pending_partition(session_id)},
            ":e": {"N": "1800000000"},
        },
        ReturnValues="ALL_NEW",  # as PynamoDB's Model.update asks
    )
    stack.redis_text.set(_cache_key(stack, session_id), "!", ex=86400)
    body = {"project_id": stack.project_id, "session_id": session_id, "deleted_at": at}
    stack.sqs.send_message(QueueUrl=stack.queue_url, MessageBody=json.dumps(body))


# --- P3: a handler against the raw calls it makes ---------------------------------------------------------


@contextlib.contextmanager
def get_hit(stack: BenchStack) -> Iterator[Comparison]:
    session_id = stack.create_session(config={"model": "m1"}, metadata={"channel": "bench"})
    event = stack.http_event("get_session.json", f"/v1/sessions/{session_id}", session_id)
    key, take = _cache_key(stack, session_id), _raw_rate_limit(stack)
    with stack.handler("GetSessionFunction") as get:
        _ok(get(event))  # fills the cache
        yield Comparison(
            "GET, cache hit",
            "ratio",
            2.0,
            Case("handler", get.run, setup=lambda: get.prepare(event)),
            Case("EVALSHA (limit) + redis GET", lambda _: (take(), stack.redis_text.get(key))),
            section=SECTION_P3,
        )


@contextlib.contextmanager
def get_miss(stack: BenchStack) -> Iterator[Comparison]:
    from session_service.adapters.redis_cache import _GUARDED_FILL

    session_id = stack.create_session(config={"model": "m1"}, metadata={"channel": "bench"})
    event = stack.http_event("get_session.json", f"/v1/sessions/{session_id}", session_id)
    key, item_key, table = (
        _cache_key(stack, session_id),
        _item_key(stack, session_id),
        stack.table("SessionsTable"),
    )
    fill = stack.redis_text.register_script(_GUARDED_FILL)
    take = _raw_rate_limit(stack)

    def raw_calls(_: Any) -> None:
        take()
        stack.redis_text.get(key)
        item = stack.ddb.get_item(TableName=table, Key=item_key, ConsistentRead=True)["Item"]
        fill(keys=[key], args=[1, int(time.time() * 1000), json.dumps(item, default=str), 30])

    with stack.handler("GetSessionFunction") as get:
        yield Comparison(
            "GET, cache miss",
            "ratio",
            1.15,
            Case("handler", get.run, setup=lambda: (stack.redis.delete(key), get.prepare(event))[1]),
            Case("EVALSHA (limit) + GET + GetItem + fill", raw_calls, setup=lambda: stack.redis.delete(key)),
            section=SECTION_P3,
        )


@contextlib.contextmanager
def delete(stack: BenchStack) -> Iterator[Comparison]:
    """The same session is deleted every round: it is revived (untimed) in between."""
    session_id = stack.create_session(config={"model": "m1"})
    raw_id = stack.create_session(config={"model": "m1"})
    event = stack.http_event("delete_session.json", f"/v1/sessions/{session_id}", session_id)
    take = _raw_rate_limit(stack)
    with stack.handler("DeleteSessionFunction") as delete_session:
        yield Comparison(
            "DELETE",
            "ratio",
            1.1,
            Case(
                "handler",
                lambda prepared: _ok(delete_session.run(prepared)),
                setup=lambda: (_revive(stack, session_id), delete_session.prepare(event))[1],
            ),
            Case(
                "EVALSHA (limit) + UpdateItem + SET + SendMessage",
                lambda _: _raw_tombstone(stack, raw_id, take),
                setup=lambda: _revive(stack, raw_id),
            ),
            section=SECTION_P3,
        )


@contextlib.contextmanager
def authorizer(stack: BenchStack) -> Iterator[Comparison]:
    event = sample_event("authorizer.json", identitySource=[stack.api_key])
    event["headers"]["x-api-key"] = stack.api_key
    hashed = hashlib.sha256(stack.api_key.encode()).hexdigest()
    table = stack.table("ApiKeysTable")
    with stack.handler("AuthorizerFunction") as authorize:
        if authorize(event)["context"].get("project_id") != stack.project_id:
            raise RuntimeError("the authorizer did not accept the bench's key")
        yield Comparison(
            "authorizer (API key)",
            "ratio",
            1.15,
            Case("handler", authorize.run, setup=lambda: authorize.prepare(event)),
            Case("GetItem", lambda _: stack.ddb.get_item(TableName=table, Key={"key_hash": {"S": hashed}})),
            section=SECTION_P3,
        )


# --- issue 11: what the cache epoch costs a cache hit -------------------------------------------------------


@contextlib.contextmanager
def epoch_cost(stack: BenchStack) -> Iterator[Comparison]:
    """A cache-hit GET with its epoch check against the same raw calls (the limiter's EVALSHA, a redis GET,
    and the epoch's GetItem whenever a second has passed since the last), as a mean over a few seconds: the
    epoch read is a rare call that a p50 would hide. The handler's epoch reads are counted (goal: at most
    one a second)."""
    from session_service.adapters.dynamodb.cache_epoch import epoch_partition

    session_id = stack.create_session(config={"model": "m1"})
    event = stack.http_event("get_session.json", f"/v1/sessions/{session_id}", session_id)
    key = _cache_key(stack, session_id)
    projects = stack.table("ProjectsTable")
    epoch_key = {"pk": {"S": epoch_partition(0)}, "sk": {"S": "epoch"}}
    last_read, raw_reads = [0.0], [0]
    take = _raw_rate_limit(stack)

    def raw_calls(_: Any) -> None:
        take()
        stack.redis_text.get(key)
        if time.monotonic() - last_read[0] >= 1.0:
            stack.ddb.get_item(TableName=projects, Key=epoch_key, ConsistentRead=True)
            last_read[0] = time.monotonic()
            raw_reads[0] += 1

    meter = Meter()
    with stack.handler("GetSessionFunction") as get:
        _ok(get(event))
        before, started = meter.snapshot(), time.monotonic()

        def note(handler: Samples, raw: Samples) -> tuple[str, list[Verdict]]:
            io = meter.since(before)
            seconds = time.monotonic() - started
            reads = io.table_calls(projects).get("GetItem", 0) - raw_reads[0]  # the handler's own
            others = io.dynamodb_reads + io.dynamodb_writes - reads - raw_reads[0]
            text = (
                f"{reads} epoch reads in {seconds:.1f} s over {len(handler.ms)} timed GETs; "
                f"other DynamoDB calls: {others}"
            )
            verdict = Verdict(
                SECTION_ROWS,
                "GET hit: epoch reads per process",
                f"{reads} in {seconds:.1f} s, {others} other DynamoDB calls",
                "<= 1/s, 0 others",
                reads <= math.ceil(seconds) + 1 and others == 0,
            )
            return text, [verdict]

        yield Comparison(
            "GET hit with the epoch check (mean)",
            "diff",
            1.0,
            Case("handler", get.run, setup=lambda: get.prepare(event)),
            Case("EVALSHA (limit) + GET + epoch GetItem <= 1/s", raw_calls),
            rounds=4000,
            stat="mean",
            note=note,
        )


# --- issue 7: MCP against the REST routes ------------------------------------------------------------------


def _mcp_event(stack: BenchStack, session_id: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    event = stack.http_event("mcp.json", f"/v1/sessions/{session_id}/mcp", session_id)
    event["body"] = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    return event


@contextlib.contextmanager
def mcp_tools_list(stack: BenchStack) -> Iterator[Comparison]:
    session_id = stack.create_session()
    mcp = _mcp_event(stack, session_id, "tools/list", {})
    rest = stack.http_event("session_tools.json", f"/v1/sessions/{session_id}/tools", session_id)
    rest["rawQueryString"], rest["queryStringParameters"] = "", None
    invoke = stack.invoker.invoke
    _ok(invoke("McpFunction", mcp)), _ok(invoke("SessionToolsFunction", rest))
    yield Comparison(
        "MCP tools/list vs GET .../tools",
        "ratio",
        1.2,
        Case("MCP", lambda _: invoke("McpFunction", mcp)),
        Case("REST", lambda _: invoke("SessionToolsFunction", rest)),
        rounds=100,
    )


@contextlib.contextmanager
def mcp_tools_call(stack: BenchStack) -> Iterator[Comparison]:
    session_id = stack.create_session()
    arguments = {"command": "true"}
    mcp = _mcp_event(stack, session_id, "tools/call", {"name": "run_command", "arguments": arguments})
    path = f"/v1/sessions/{session_id}/tools/run_command/call"
    rest = stack.http_event("call_tool.json", path, session_id, body=json.dumps({"arguments": arguments}))
    rest["pathParameters"] = {"session_id": session_id, "tool_name": "run_command"}
    invoke = stack.invoker.invoke
    _ok(invoke("McpFunction", mcp)), _ok(invoke("CallToolFunction", rest))  # the sandbox exists from here
    yield Comparison(
        "MCP tools/call vs POST .../call (`true`)",
        "ratio",
        1.2,
        Case("MCP", lambda _: _ok(invoke("McpFunction", mcp))),
        Case("REST", lambda _: _ok(invoke("CallToolFunction", rest))),
        rounds=60,
    )


# --- issue 8: DELETE of a heavy session; append against its raw calls ----------------------------------


def _add_messages(stack: BenchStack, session_id: str, count: int) -> None:
    """`count` messages in the session's partition, as appends leave them (counter included); written in
    batches because only their presence matters here: the DELETE must not read or write them."""
    from session_service.adapters.dynamodb.messages import COUNTER, message_sk
    from session_service.domain import keys

    partition = keys.audit_partition(stack.project_id, session_id)
    table = stack.table("MessagesTable")
    items = [
        {
            "session_key": {"S": partition},
            "sk": {"S": message_sk(seq)},
            "message_id": {"S": f"msg_bench{seq:08d}"},
            "seq": {"N": str(seq)},
            "content": {"S": json.dumps({"role": "user", "text": f"message {seq} " + "x" * 200})},
            "created_at": {"S": "2026-01-01T00:00:00.000000Z"},
            "project_id": {"S": stack.project_id},
            "session_id": {"S": session_id},
        }
        for seq in range(1, count + 1)
    ]
    items.append({"session_key": {"S": partition}, "sk": {"S": COUNTER}, "last_seq": {"N": str(count)}})
    for start in range(0, len(items), 25):
        batch = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        stack.ddb.batch_write_item(RequestItems={table: batch})


def _remove_messages(stack: BenchStack, session_id: str, count: int) -> None:
    from session_service.adapters.dynamodb.messages import COUNTER, message_sk
    from session_service.domain import keys

    partition = keys.audit_partition(stack.project_id, session_id)
    sks = [message_sk(seq) for seq in range(1, count + 1)] + [COUNTER]
    for start in range(0, len(sks), 25):
        batch = [
            {"DeleteRequest": {"Key": {"session_key": {"S": partition}, "sk": {"S": sk}}}}
            for sk in sks[start : start + 25]
        ]
        stack.ddb.batch_write_item(RequestItems={stack.table("MessagesTable"): batch})


@contextlib.contextmanager
def delete_heavy(stack: BenchStack) -> Iterator[Comparison]:
    heavy, empty = stack.create_session(config={"model": "m1"}), stack.create_session(config={"model": "m1"})
    _add_messages(stack, heavy, 1000)
    create_sandboxes(
        stack.e2b.url, stack.e2b.api_key, {"project_id": stack.project_id, "session_id": heavy}, 50
    )
    events = {
        sid: stack.http_event("delete_session.json", f"/v1/sessions/{sid}", sid) for sid in (heavy, empty)
    }
    try:
        with stack.handler("DeleteSessionFunction") as delete_session:
            yield Comparison(
                "DELETE: 1,000 messages + 50 sandboxes vs empty",
                "ratio",
                1.1,
                Case(
                    "heavy",
                    lambda prepared: _ok(delete_session.run(prepared)),
                    setup=lambda: (_revive(stack, heavy), delete_session.prepare(events[heavy]))[1],
                ),
                Case(
                    "empty",
                    lambda prepared: _ok(delete_session.run(prepared)),
                    setup=lambda: (_revive(stack, empty), delete_session.prepare(events[empty]))[1],
                ),
                rounds=120,
            )
    finally:
        # moto copies every table a transaction touches (for its rollback): 1,000 messages left in the
        # table would slow every later transaction on it, on both sides of any comparison.
        _remove_messages(stack, heavy, 1000)


@contextlib.contextmanager
def append(stack: BenchStack) -> Iterator[Comparison]:
    """An append (no local_id) against its calls: the rate limiter's EVALSHA, the session's GetItem, the
    counter's GetItem, and one transaction (the session's ConditionCheck, the counter moved, the message
    put). The activity stamp (an UpdateItem at most once a minute per session) is outside the p50."""
    from session_service.adapters.dynamodb.messages import COUNTER, message_sk
    from session_service.domain import keys

    session_id, raw_id = stack.create_session(), stack.create_session()
    path = f"/v1/sessions/{session_id}/messages"
    body = json.dumps({"content": {"role": "user", "text": "hello there"}})
    event = stack.http_event("append_message.json", path, session_id, body=body)
    sessions, messages = stack.table("SessionsTable"), stack.table("MessagesTable")
    partition = keys.audit_partition(stack.project_id, raw_id)
    counter_key = {"session_key": {"S": partition}, "sk": {"S": COUNTER}}
    take = _raw_rate_limit(stack)

    def raw_calls(_: Any) -> None:
        take()
        stack.ddb.get_item(TableName=sessions, Key=_item_key(stack, raw_id), ConsistentRead=True)
        counter = stack.ddb.get_item(TableName=messages, Key=counter_key, ConsistentRead=True).get("Item")
        last = int(counter["last_seq"]["N"]) if counter else 0
        seq = last + 1
        condition = (
            {"ConditionExpression": "attribute_not_exists(last_seq)"}
            if counter is None
            else {
                "ConditionExpression": "last_seq = :last",
                "ExpressionAttributeValues": {":last": {"N": str(last)}},
            }
        )
        update = {
            "TableName": messages,
            "Key": counter_key,
            "UpdateExpression": "SET last_seq = :seq",
            **condition,
        }
        update["ExpressionAttributeValues"] = {
            **update.get("ExpressionAttributeValues", {}),
            ":seq": {"N": str(seq)},
        }
        stack.ddb.transact_write_items(
            TransactItems=[
                {
                    "ConditionCheck": {
                        "TableName": sessions,
                        "Key": _item_key(stack, raw_id),
                        "ConditionExpression": "attribute_exists(session_id) "
                        "AND attribute_not_exists(deleted_at)",
                    }
                },
                {"Update": update},
                {
                    "Put": {
                        "TableName": messages,
                        "Item": {
                            "session_key": {"S": partition},
                            "sk": {"S": message_sk(seq)},
                            "message_id": {"S": f"msg_{uuid.uuid4().hex}"},
                            "seq": {"N": str(seq)},
                            "content": {"S": json.dumps({"role": "user", "text": "hello there"})},
                            "created_at": {"S": "2026-01-01T00:00:00.000000Z"},
                            "project_id": {"S": stack.project_id},
                            "session_id": {"S": raw_id},
                        },
                        "ConditionExpression": "attribute_not_exists(sk)",
                    }
                },
            ],
            ClientRequestToken=uuid.uuid4().hex,
        )

    with stack.handler("AppendMessageFunction") as append_message:
        _ok(append_message(event), 201)
        yield Comparison(
            "append (POST .../messages)",
            "ratio",
            1.15,
            Case(
                "handler",
                lambda prepared: _ok(append_message.run(prepared), 201),
                setup=lambda: append_message.prepare(event),
            ),
            Case("EVALSHA (limit) + 2 GetItem + TransactWriteItems", raw_calls),
            rounds=80,
            section=SECTION_P3,
        )


@contextlib.contextmanager
def agent_state(stack: BenchStack) -> Iterator[Comparison]:
    """PUT .../agent-state (issue 28) against its calls: the rate limiter's EVALSHA, the one conditional
    UpdateItem (ALL_NEW, as PynamoDB asks), and the cache's fill (a SET here; the handler's guarded script).
    Sealing is the handler's own work (AES-GCM under a key the process holds). Each round is the next
    version, on both sides."""
    session_id, raw_id = stack.create_session(), stack.create_session()
    path = f"/v1/sessions/{session_id}/agent-state"
    handler_versions, raw_versions = itertools.count(0), itertools.count(0)
    take = _raw_rate_limit(stack)
    state = {"step": "running tests", "pending": ["approve rm -rf build/"], "controller": "agent"}

    def event() -> dict[str, Any]:
        body = json.dumps({"agent_state": state, "expected_version": next(handler_versions)})
        return stack.http_event("put_agent_state.json", path, session_id, body=body)

    def raw_calls(_: Any) -> None:
        take()
        version = next(raw_versions)
        stack.ddb.update_item(
            TableName=stack.table("SessionsTable"),
            Key=_item_key(stack, raw_id),
            UpdateExpression="SET agent_state_sealed = :s, agent_state_version = :n",
            ConditionExpression="attribute_exists(session_id) AND attribute_not_exists(deleted_at) "
            "AND (attribute_not_exists(agent_state_version) OR agent_state_version = :v)",
            ExpressionAttributeValues={
                ":s": {"B": os.urandom(13) + json.dumps(state).encode() + os.urandom(16)},
                ":n": {"N": str(version + 1)},
                ":v": {"N": str(version)},
            },
            ReturnValues="ALL_NEW",
        )
        stack.redis_text.set(_cache_key(stack, raw_id), json.dumps(state), ex=30)

    with stack.handler("PutAgentStateFunction") as put_agent_state:
        _ok(put_agent_state(event()))
        raw_calls(None)  # both sides past their first write
        yield Comparison(
            "PUT .../agent-state",
            "ratio",
            1.15,
            Case(
                "handler",
                lambda prepared: _ok(put_agent_state.run(prepared)),
                setup=lambda: put_agent_state.prepare(event()),
            ),
            Case("EVALSHA (limit) + UpdateItem + SET", raw_calls),
            section=SECTION_P3,
        )


ROWS: list[Row] = [
    get_hit,
    get_miss,
    delete,
    authorizer,
    epoch_cost,
    mcp_tools_list,
    mcp_tools_call,
    append,
    agent_state,
    delete_heavy,
]


def run(stack: BenchStack, rows: list[Row] | None = None) -> list[Verdict]:
    verdicts: list[Verdict] = []
    table: dict[str, list[list[str]]] = {}
    for row in rows or ROWS:
        started = time.monotonic()
        with row(stack) as comparison:
            a, b = paired(comparison.a, comparison.b, comparison.rounds)
        say(f"  ({comparison.name}: {time.monotonic() - started:.0f} s)")
        stat = (lambda s: s.mean) if comparison.stat == "mean" else (lambda s: s.p50)
        va, vb = stat(a), stat(b)
        if comparison.kind == "diff":
            # The handler's own work: its thread's CPU time beyond the raw calls'. The wall-clock figures
            # beside it (the p50s' difference, the median of back-to-back differences) also count waiting
            # for moto and for a CPU, which on a shared 2-core machine swings them by milliseconds.
            cpu = (
                (lambda s: statistics.fmean(s.cpu_ms)) if comparison.stat == "mean" else (lambda s: s.cpu_p50)
            )
            value = cpu(a) - cpu(b)
            measured = f"{value:+.2f} ms CPU"
            goal = "-" if comparison.goal is None else f"<= {comparison.goal} ms"
        else:  # a ratio, of CPU time too (the wall ratio is printed beside it), with the milliseconds
            value = a.cpu_p50 / b.cpu_p50
            measured = f"{value:.2f}x CPU ({a.cpu_p50:.2f} / {b.cpu_p50:.2f} ms)"
            goal = "-" if comparison.goal is None else f"<= {comparison.goal}x"
        ok = None if comparison.goal is None else value <= comparison.goal
        table.setdefault(comparison.section, []).append(
            [
                comparison.name,
                f"{comparison.a.label} {va:.2f}",
                f"{comparison.b.label} {vb:.2f}",
                f"{a.quantile(0.9):.2f} / {b.quantile(0.9):.2f}",
                f"{a.cpu_p50:.2f} / {b.cpu_p50:.2f}",
                f"{va - vb:+.2f} / {paired_difference(a, b):+.2f}"
                if comparison.kind == "diff"
                else f"{va / vb:.2f}x",
                measured,
                goal,
            ]
        )
        verdicts.append(Verdict(comparison.section, comparison.name, measured, goal, ok))
        if comparison.note:
            text, more = comparison.note(a, b)
            table[comparison.section].append(["", text, "", "", "", "", "", ""])
            verdicts += more
    for section, rows_ in table.items():
        say(
            f"\n{section} (ms; a, b: wall p50 unless marked; wall: the p50s' difference / the median of "
            "a - b over back-to-back pairs, or their ratio; measured: the same in CPU time)"
        )
        print_table(["row", "a", "b", "p90", "cpu p50", "wall: a-b / paired, a/b", "measured", "goal"], rows_)
    return verdicts


P3_ROWS = [get_hit, get_miss, delete, authorizer, append, agent_state]
