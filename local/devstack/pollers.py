"""Event sources other than HTTP, run the way AWS runs them.

`SqsEventSourceMapping` behaves like Lambda's SQS event source mapping: it long-polls the queue, invokes
the function with a batch of records, and with ReportBatchItemFailures deletes every record except those
listed in `batchItemFailures`. If the invocation fails as a whole, it deletes none. Records it does not
delete become visible again after the queue's visibility timeout, and the queue's RedrivePolicy moves
them to the dead-letter queue after maxReceiveCount receives (moto implements both).

`DynamoDbStreamEventSourceMapping` behaves like Lambda's DynamoDB Streams event source mapping: it reads
each shard of a table's stream in order, invokes the function with batches of records, and moves on only
when a batch succeeded. With ReportBatchItemFailures it retries from the first failed record; a failed
invocation is retried whole (split in halves with BisectBatchOnFunctionError), after a short back-off,
until MaximumRetryAttempts or MaximumRecordAgeInSeconds gives up on the records (logged, then skipped).

`ScheduleRunner` invokes a function with an EventBridge "Scheduled Event" at the template's rate, or at a
shorter local period when one is given.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config

from devstack.functions import FunctionRuntime

log = logging.getLogger("devstack.pollers")


class Poller:
    """One background thread per event source, as each managed event source mapping is: `step` does one
    unit of work and says how long to wait before the next (0: at once); an error is logged and the source
    keeps polling after `error_pause`, as the managed ones do."""

    name = "poller"
    error_pause = 1.0
    first_pause = 0.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def step(self) -> float:
        raise NotImplementedError

    def _loop(self) -> None:
        pause = self.first_pause
        while not (pause and self._stop.wait(pause)) and not self._stop.is_set():
            try:
                pause = self.step()
            except Exception:
                log.exception("%s: poll failed", self.name)
                pause = self.error_pause

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, join_timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=join_timeout)


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


class SqsEventSourceMapping(Poller):
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
        super().__init__()
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

    def step(self) -> float:
        self.poll_once()  # a long poll: it waits for messages itself
        return 0.0

    def stop(self, join_timeout: float | None = None) -> None:
        super().stop(self._wait + 5 if join_timeout is None else join_timeout)


@dataclass
class StreamPollResult:
    delivered: int = 0  # records the function took
    retried: int = 0  # invocations that had to be repeated (failed records or errors)
    discarded: int = 0  # records given up on (retry attempts or record age exhausted)


class DynamoDbStreamEventSourceMapping(Poller):
    def __init__(
        self,
        runtime: FunctionRuntime,
        function_id: str,
        *,
        stream_arn: str,
        region: str,
        endpoint_url: str,
        batch_size: int = 100,
        starting_position: str = "LATEST",
        report_batch_item_failures: bool = True,
        bisect_on_error: bool = False,
        maximum_retry_attempts: int = -1,
        maximum_record_age_seconds: int = -1,
        poll_interval: float = 0.1,
        max_backoff: float = 1.0,
    ) -> None:
        super().__init__()
        self.name = f"stream:{function_id}"
        self._runtime = runtime
        self._function_id = function_id
        self._stream_arn = stream_arn
        self._region = region
        self._batch_size = max(1, min(batch_size, 1000))
        self._starting_position = starting_position
        self._partial = report_batch_item_failures
        self._bisect = bisect_on_error
        self._max_retries = maximum_retry_attempts
        self._max_age = maximum_record_age_seconds
        self._poll_interval = self.error_pause = poll_interval
        self._max_backoff = max_backoff
        self._streams = boto3.client(
            "dynamodbstreams",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106
            # botocore would put the account id into the host of ARN-taking calls, which moto does not route.
            config=Config(account_id_endpoint_mode="disabled"),
        )
        self._iterators: dict[str, str] = {}  # shard id → the iterator to read next
        self._pending: dict[str, list[dict[str, Any]]] = {}  # shard id → records read but not yet taken
        self._attempts: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}

    def _open_shards(self) -> None:
        description = self._streams.describe_stream(StreamArn=self._stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self._stream_arn, ShardId=shard_id, ShardIteratorType=self._starting_position
                )["ShardIterator"]

    def poll_once(self) -> StreamPollResult:
        """One pass over the shards: a shard holding failed records retries them (once its back-off has
        passed) before anything newer; otherwise its next batch is read and delivered."""
        if not self._iterators:
            self._open_shards()
        result = StreamPollResult()
        for shard_id, iterator in list(self._iterators.items()):
            records = self._pending.get(shard_id)
            if records:
                if time.monotonic() < self._retry_at.get(shard_id, 0.0):
                    continue
            else:
                response = self._streams.get_records(ShardIterator=iterator, Limit=self._batch_size)
                self._iterators[shard_id] = response["NextShardIterator"]
                records = [self._lambda_record(record) for record in response.get("Records", [])]
                if not records:
                    continue
                self._attempts[shard_id] = 0
            remaining = self._deliver(records, result)
            if not remaining:
                self._pending.pop(shard_id, None)
                continue
            attempts = self._attempts[shard_id] = self._attempts.get(shard_id, 0) + 1
            result.retried += 1
            if self._exhausted(remaining, attempts):
                log.error("%s: giving up on %d record(s) after %d tries", self.name, len(remaining), attempts)
                result.discarded += len(remaining)
                self._pending.pop(shard_id, None)
                continue
            self._pending[shard_id] = remaining  # the shard waits: records are delivered in order
            backoff = min(self._poll_interval * 2 ** (attempts - 1), self._max_backoff)
            self._retry_at[shard_id] = time.monotonic() + backoff
        return result

    def _lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """A stream record as Lambda hands it over: JSON-safe (binary attributes base64, as Lambda's event
        has them), with the stream's ARN."""
        stream = {key: _base64_binaries(value) for key, value in record["dynamodb"].items()}
        created = stream.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):  # Lambda sends epoch seconds, rounded down to the second
            stream["ApproximateCreationDateTime"] = float(int(created.timestamp()))
        return {**record, "dynamodb": stream, "eventSourceARN": self._stream_arn}

    def _deliver(self, records: list[dict[str, Any]], result: StreamPollResult) -> list[dict[str, Any]]:
        """One attempt (a failed batch is split in halves with bisect); returns the records not taken."""
        invocation = self._runtime.execute(self._function_id, {"Records": records})
        if invocation.ok:
            failures = (invocation.result or {}).get("batchItemFailures", []) if self._partial else []
            failed = {str(failure.get("itemIdentifier")) for failure in failures}
            first = next(
                (i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] in failed), len(records)
            )
            result.delivered += first
            return records[first:]  # Lambda retries from the first failed record
        log.warning("%s: invocation failed: %s", self.name, (invocation.error or {}).get("errorMessage"))
        if self._bisect and len(records) > 1:
            middle = len(records) // 2
            remaining = self._deliver(records[:middle], result)
            return remaining + records[middle:] if remaining else self._deliver(records[middle:], result)
        return records

    def _exhausted(self, records: list[dict[str, Any]], attempts: int) -> bool:
        if 0 <= self._max_retries < attempts:
            return True
        created = records[0]["dynamodb"].get("ApproximateCreationDateTime")
        return self._max_age >= 0 and isinstance(created, float) and time.time() - created > self._max_age

    def step(self) -> float:
        return 0.0 if self.poll_once().delivered else self._poll_interval


_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def _base64_binaries(value: Any) -> Any:
    """boto3 decodes a stream record's B and BS values to bytes; Lambda's event carries them base64."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {key: _base64_binaries(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_base64_binaries(item) for item in value]
    return value


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


class ScheduleRunner(Poller):
    def __init__(
        self, runtime: FunctionRuntime, function_id: str, *, period_seconds: float, region: str, rule: str
    ) -> None:
        super().__init__()
        self.name = f"schedule:{function_id}"
        self.first_pause = self.error_pause = period_seconds
        self._runtime = runtime
        self._function_id = function_id
        self._period = period_seconds
        self._region = region
        self._rule_arn = f"arn:aws:events:{region}:123456789012:rule/{rule}"

    def run_once(self) -> Any:
        invocation = self._runtime.execute(self._function_id, scheduled_event(self._rule_arn, self._region))
        if not invocation.ok:
            log.warning("%s: failed: %s", self.name, invocation.error)
        return invocation

    def step(self) -> float:
        self.run_once()
        return self._period
