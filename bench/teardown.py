"""P4 teardown throughput: a deleted session's sandboxes torn down by TeardownFunction, as the SQS event
source mapping feeds it, against the local E2B API in a process of its own (as E2B is remote) with latency
injected on every kill.

A trial: a session with N sandboxes (every tenth paused), a DELETE through the API, then the queue drained
into TeardownFunction (batches as the template's event source mapping takes them; a record the function
reports failed comes back at once instead of after the visibility timeout) until the session's tombstone
says done and E2B has none of its sandboxes left. A run kills at most TEARDOWN_MAX_SANDBOXES_PER_RUN (100)
and re-enqueues the rest, so 1,000 sandboxes take 10 runs. "Function time" is the sum of the invocations'
durations: what Lambda bills and what the queue waits for.

Budgets: 100 sandboxes at 50 ms per kill <= 1.5 s of function time; 1,000 <= 12 s across runs; with 429s
injected on kills, nothing is left behind. The kill concurrency is chosen from the sweep this prints,
weighed against E2B's published limits (docs/operations.md: 20,000 lifecycle calls (create, kill, list...)
per 30 s per team, which 5 teardowns x 8 kills exceed when kills take under 60 ms: the 429s are retried;
sandbox creation 1/s Hobby and 5/s Pro).
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from bench.common import Verdict, print_table, say
from bench.stack import BenchStack, create_sandboxes

SECTION = "P4 teardown throughput"
KILL_LATENCY_S = 0.05
SWEEP = (4, 8, 16, 32)


@dataclass
class Trial:
    sandboxes: int
    concurrency: int
    function_s: float
    wall_s: float
    runs: int
    invocations: int
    left: int
    done: bool


class LocalE2BProcess:
    """The local E2B API as a child process, driven through its control API (/_local/...)."""

    def __init__(self, stack: BenchStack) -> None:
        from devstack.services import E2BServer

        # The same key as the in-process one: the functions read it from the (moto) E2B key secret.
        self.server = E2BServer(api_key=stack.e2b.api_key, reaper_interval=5.0)

    def __enter__(self) -> LocalE2BProcess:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return self.server.url

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        request.add_header("X-API-KEY", self.server.api_key)
        request.add_header("content-type", "application/json")
        with urllib.request.urlopen(request, timeout=30) as reply:
            text = reply.read()
        return json.loads(text) if text else None

    def faults(self, **rule: Any) -> None:
        self._call("POST", "/_local/faults", rule)

    def reset_faults(self) -> None:
        self._call("POST", "/_local/reset-faults", {})

    def left(self, metadata: dict[str, str]) -> int:
        query = urllib.parse.quote(urllib.parse.urlencode(metadata))
        return len(self._call("GET", f"/_local/sandboxes?metadata={query}"))


def _drain(stack: BenchStack) -> None:
    """Empty the teardown queue (what other sections left), so a trial sees only its own messages."""
    while True:
        got = stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        messages = got.get("Messages", [])
        if not messages:
            return
        stack.sqs.delete_message_batch(
            QueueUrl=stack.queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )


def trial(
    stack: BenchStack, e2b: LocalE2BProcess, sandboxes: int, concurrency: int, *, throttled: int = 0
) -> Trial:
    from devstack.pollers import sqs_record

    env = {
        "E2B_API_URL": e2b.url,
        "E2B_SANDBOX_URL": e2b.url,
        "TEARDOWN_KILL_CONCURRENCY": str(concurrency),
    }
    batch_size = stack.template.function("TeardownFunction").sqs[0].batch_size
    arn = stack.resources.attribute("TeardownQueue", "Arn")
    session_id = stack.create_session()
    metadata = {"project_id": stack.project_id, "session_id": session_id}
    create_sandboxes(e2b.url, e2b.server.api_key, metadata, sandboxes)
    _drain(stack)
    e2b.reset_faults()
    e2b.faults(method="DELETE", path_prefix="/sandboxes/", latency_s=KILL_LATENCY_S)
    if throttled:
        e2b.faults(method="DELETE", path_prefix="/sandboxes/", status=429, times=throttled)
    started = time.monotonic()
    reply = stack.call("DELETE", f"/v1/sessions/{session_id}")
    if reply.status != 200:
        raise RuntimeError(f"DELETE answered {reply.status}: {reply.body}")
    function_ms, runs, invocations = 0.0, 0, 0
    deadline = started + 120
    while time.monotonic() < deadline:
        got = stack.sqs.receive_message(
            QueueUrl=stack.queue_url,
            MaxNumberOfMessages=batch_size,
            WaitTimeSeconds=0,
            AttributeNames=["All"],
        )
        messages = got.get("Messages", [])
        if not messages:
            break
        records = [sqs_record(message, arn, "us-east-1") for message in messages]
        invocation = stack.invoker.execute("TeardownFunction", {"Records": records}, env_overrides=env)
        function_ms += invocation.duration_ms
        invocations += 1
        runs += len(records)
        failed = set()
        if invocation.ok:
            failed = {f["itemIdentifier"] for f in (invocation.result or {}).get("batchItemFailures", [])}
        else:
            failed = {r["messageId"] for r in records}
        for message in messages:
            if message["MessageId"] in failed:  # comes back now rather than after the visibility timeout
                stack.sqs.change_message_visibility(
                    QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                stack.sqs.delete_message(QueueUrl=stack.queue_url, ReceiptHandle=message["ReceiptHandle"])
    wall = time.monotonic() - started
    e2b.reset_faults()
    left = e2b.left(metadata)
    state = stack.call("GET", "/v1/sessions", query={"include_deleted": "true", "limit": "100"})
    done = any(
        item["id"] == session_id and (item.get("teardown") or {}).get("state") == "done"
        for item in state.body.get("items", [])
    )
    return Trial(sandboxes, concurrency, function_ms / 1000, wall, runs, invocations, left, done)


def run(stack: BenchStack) -> list[Verdict]:
    from session_service.settings import Settings

    chosen = Settings().teardown_kill_concurrency
    rows, verdicts = [], []
    with LocalE2BProcess(stack) as e2b:
        for concurrency in {*SWEEP, chosen}:  # each setting's first run pays for its clients: not counted
            trial(stack, e2b, 5, concurrency)
        sweep = [trial(stack, e2b, 100, c) for c in SWEEP]
        hundred = trial(stack, e2b, 100, chosen)
        thousand = trial(stack, e2b, 1000, chosen)
        throttled = trial(stack, e2b, 100, chosen, throttled=60)
    say(f"\n{SECTION}: {KILL_LATENCY_S * 1000:.0f} ms on every kill (local E2B API in its own process)")
    for label, result in [
        *[(f"100, kill concurrency {t.concurrency}", t) for t in sweep],
        (f"100 at the setting ({chosen})", hundred),
        (f"1,000 at the setting ({chosen})", thousand),
        (f"100 at {chosen}, 60 kills answered 429", throttled),
    ]:
        rate = result.sandboxes / result.function_s if result.function_s else 0.0
        rows.append(
            [
                label,
                f"{result.function_s:.2f} s",
                f"{result.wall_s:.2f} s",
                f"{rate:.0f}/s",
                str(result.runs),
                str(result.left),
                "done" if result.done else "NOT done",
            ]
        )
    print_table(["sandboxes", "function time", "wall", "kills/s", "records", "left", "tombstone"], rows)
    say(
        "  kills/s of one teardown = concurrency / latency at best; with MaximumConcurrency 5 (template), "
        f"{chosen} x 5 / {KILL_LATENCY_S} s = {chosen * 5 / KILL_LATENCY_S:.0f}/s at this latency, against "
        "E2B's 20,000 lifecycle calls / 30 s (667/s) per team"
    )
    verdicts.append(
        Verdict(
            SECTION,
            f"100 sandboxes (kill concurrency {chosen})",
            f"{hundred.function_s:.2f} s",
            "<= 1.5 s",
            hundred.function_s <= 1.5 and hundred.left == 0 and hundred.done,
        )
    )
    verdicts.append(
        Verdict(
            SECTION,
            f"1,000 sandboxes over {thousand.runs} runs",
            f"{thousand.function_s:.2f} s",
            "<= 12 s",
            thousand.function_s <= 12 and thousand.left == 0 and thousand.done,
        )
    )
    verdicts.append(
        Verdict(
            SECTION,
            "60 kills answered 429: nothing left behind",
            f"{throttled.left} left, tombstone {'done' if throttled.done else 'not done'}, "
            f"{throttled.runs} records",
            "0 left, done",
            throttled.left == 0 and throttled.done,
        )
    )
    return verdicts
