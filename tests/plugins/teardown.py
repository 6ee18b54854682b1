"""The teardown pipeline as Lambda runs it: the template's TeardownFunction fed by an SQS event source
mapping over the session's real (moto) queue, and the SweeperFunction on demand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devstack.pollers import PollResult, SqsEventSourceMapping, scheduled_event


class TeardownPipeline:
    def __init__(self, invoker: Any, resources: Any, endpoint_url: str, region: str) -> None:
        self.invoker = invoker
        self.queue_url = resources.ref("TeardownQueue")
        self.dlq_url = resources.ref("TeardownDeadLetterQueue")
        self.sqs = boto3.client("sqs", region_name=region, endpoint_url=endpoint_url)
        self._in_flight: list[str] = []
        self.mapping = SqsEventSourceMapping(
            invoker,
            "TeardownFunction",
            queue_url=self.queue_url,
            queue_arn=resources.attribute("TeardownQueue", "Arn"),
            region=region,
            endpoint_url=endpoint_url,
            batch_size=10,
            wait_seconds=0,
        )

    def purge(self) -> None:
        """Empty both queues (receive and delete: SQS allows one PurgeQueue a minute)."""
        for url in (self.queue_url, self.dlq_url):
            while True:
                messages = self.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=0
                ).get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def depth(self, url: str | None = None) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def poll(self) -> PollResult:
        result = self.mapping.poll_once(wait_seconds=0)
        self._in_flight += result.failed_receipts
        return result

    def drain(self, rounds: int = 10) -> list[PollResult]:
        """Poll until the queue is empty (successful records are deleted; failed ones stay in flight)."""
        results = []
        for _ in range(rounds):
            result = self.poll()
            if not result.received:
                break
            results.append(result)
        return results

    def expire_visibility(self) -> None:
        """Let the visibility timeout of in-flight (failed) messages elapse now instead of in 6 minutes."""
        for receipt in self._in_flight:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
        self._in_flight.clear()

    def send_raw(self, body: str) -> str:
        return self.sqs.send_message(QueueUrl=self.queue_url, MessageBody=body)["MessageId"]

    def sweep(self, env: dict[str, str] | None = None) -> Any:
        return self.invoker.invoke(
            "SweeperFunction", scheduled_event("rule/sweeper", "us-east-1"), env_overrides=env
        )


@pytest.fixture
def teardown(
    invoker: Any, local_resources: Any, moto_server: Any, e2b_env: Any
) -> Iterator[TeardownPipeline]:
    pipeline = TeardownPipeline(invoker, local_resources, moto_server.url, "us-east-1")
    pipeline.purge()
    yield pipeline
    pipeline.purge()
