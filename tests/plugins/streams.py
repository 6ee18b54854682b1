"""The sessions table's stream as Lambda runs it: CacheInvalidatorFunction fed by a DynamoDB Streams event
source mapping over the session's real (moto) table, polled on demand by the tests."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.pollers import DynamoDbStreamEventSourceMapping, StreamPollResult


class StreamPipeline:
    def __init__(self, invoker: Any, resources: Any, endpoint_url: str, function_id: str) -> None:
        function = invoker.template.function(function_id)
        (source,) = function.streams
        self.mapping = DynamoDbStreamEventSourceMapping(
            invoker,
            function_id,
            stream_arn=resources.attribute(source.table_id, "StreamArn"),
            region="us-east-1",
            endpoint_url=endpoint_url,
            batch_size=source.batch_size,
            starting_position="LATEST",
            report_batch_item_failures="ReportBatchItemFailures" in source.function_response_types,
            bisect_on_error=source.bisect_on_error,
            poll_interval=0.0,  # a failed batch is retried on the next poll, without a back-off
            max_backoff=0.0,
        )
        self.mapping.poll_once()  # opens the shard iterators at LATEST: only changes from now on

    def drain(self, rounds: int = 20) -> StreamPollResult:
        """Deliver what was written since the last call; records the function fails stay pending (the
        shard waits for them, as on Lambda) and are retried by the next drain."""
        total = StreamPollResult()
        for _ in range(rounds):
            result = self.mapping.poll_once()
            total.delivered += result.delivered
            total.retried += result.retried
            total.discarded += result.discarded
            if not (result.delivered or result.discarded):
                break
        return total


@pytest.fixture
def cache_invalidator(invoker: Any, local_resources: Any, moto_server: Any) -> StreamPipeline:
    return StreamPipeline(invoker, local_resources, moto_server.url, "CacheInvalidatorFunction")
