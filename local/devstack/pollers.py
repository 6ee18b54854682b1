"""Event sources other than HTTP, run the way AWS runs them.

`SqsEventSourceMapping` behaves like Lambda's SQS event source mapping: it long-polls the queue, invokes
the function with a batch of records, and with ReportBatchItemFailures deletes every record except those
listed in `batchItemFailures`. If the invocation fails as a whole, it deletes none. Records it does not
delete become visible again after the queue's visibility timeout, and the queue's RedrivePolicy moves
them to the dead-letter queue after maxReceiveCount receives (moto implements both).

`ScheduleRunner` invokes a function with an EventBridge "Scheduled Event" at the template's rate, or at a
shorter local period when one is given.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3

from devstack.functions import FunctionRuntime

log = logging.getLogger("devstack.pollers")


@dataclass
class PollResult:
    received: int = 0
    failed_ids: list[str] = field(default_factory=list)
    failed_receipts: list[str] = field(default_factory=list)  # still in flight until the visibility timeout
    deleted: int = 0
    error: str | None = None


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as Lambda hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


class SqsEventSourceMapping:
    def __init__(
        self,
        runtime: FunctionRuntime,
        function_id: str,
        *,
        queue_url: str,
        queue_arn: str,
        region: str,
        endpoint_url: str,
        batch_size: int = 10,
        report_batch_item_failures: bool = True,
        wait_seconds: int = 1,
    ) -> None:
        self.name = f"sqs:{function_id}"
        self._runtime = runtime
        self._function_id = function_id
        self._queue_url = queue_url
        self._queue_arn = queue_arn
        self._region = region
        self._batch_size = max(1, min(batch_size, 10))
        self._partial = report_batch_item_failures
        self._wait = wait_seconds
        # Local moto: fixed dummy credentials, never the developer's own (as local_overrides gives functions).
        self._sqs = boto3.client(
            "sqs",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self, wait_seconds: int | None = None) -> PollResult:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=self._wait if wait_seconds is None else wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[Any] = list(response.get("Messages", []))
        if not messages:
            return PollResult()
        records = [sqs_record(m, self._queue_arn, self._region) for m in messages]
        invocation = self._runtime.execute(self._function_id, {"Records": records})
        result = PollResult(received=len(records))
        if not invocation.ok:
            # The whole batch failed: nothing is deleted; every record returns after the visibility timeout.
            result.failed_ids = [r["messageId"] for r in records]
            result.failed_receipts = [r["receiptHandle"] for r in records]
            result.error = str((invocation.error or {}).get("errorMessage"))
            log.warning("%s: invocation failed: %s", self.name, result.error)
            return result
        failures = (invocation.result or {}).get("batchItemFailures", []) if self._partial else []
        result.failed_ids = [f["itemIdentifier"] for f in failures]
        failed = set(result.failed_ids)
        result.failed_receipts = [r["receiptHandle"] for r in records if r["messageId"] in failed]
        done = [r for r in records if r["messageId"] not in failed]
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(done)],
            )
        result.deleted = len(done)
        log.info("%s: %d record(s), %d failed", self.name, len(records), len(result.failed_ids))
        return result

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # a dev-stack poller keeps polling, as the managed one does
                log.exception("%s: poll failed", self.name)
                self._stop.wait(1.0)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._wait + 5)


_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def rate_seconds(expression: str) -> float:
    match = _RATE.match(expression.strip())
    if not match:
        raise ValueError(f"only rate(...) schedules are run locally, not {expression!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def scheduled_event(rule_arn: str, region: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class ScheduleRunner:
    def __init__(
        self, runtime: FunctionRuntime, function_id: str, *, period_seconds: float, region: str, rule: str
    ) -> None:
        self.name = f"schedule:{function_id}"
        self._runtime = runtime
        self._function_id = function_id
        self._period = period_seconds
        self._region = region
        self._rule_arn = f"arn:aws:events:{region}:123456789012:rule/{rule}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> Any:
        invocation = self._runtime.execute(self._function_id, scheduled_event(self._rule_arn, self._region))
        if not invocation.ok:
            log.warning("%s: failed: %s", self.name, invocation.error)
        return invocation

    def _loop(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.run_once()
            except Exception:
                log.exception("%s: run failed", self.name)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
