"""The tables' streams as Lambda runs them: a stream consumer (CacheInvalidatorFunction, NotifierFunction)
fed by a DynamoDB Streams event source mapping over the session's real (moto) table, polled on demand by the
tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from devstack.functions import Invocation
from devstack.pollers import DynamoDbStreamEventSourceMapping, StreamPollResult


class _Runtime:
    """The invoker as the mapping's runtime, with the function's environment overrides (if any)."""

    def __init__(self, invoker: Any, env: Mapping[str, str] | None) -> None:
        self.invoker, self.env = invoker, env

    def execute(self, logical_id: str, event: Any) -> Invocation:
        result: Invocation = self.invoker.execute(logical_id, event, env_overrides=self.env)
        return result


class StreamPipeline:
    """One of the function's stream event sources: its only one, or the one reading `table`'s stream."""

    def __init__(
        self,
        invoker: Any,
        resources: Any,
        endpoint_url: str,
        function_id: str,
        *,
        table: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        streams = invoker.template.function(function_id).streams
        (source,) = [s for s in streams if s.table_id == table] if table else streams
        self.mapping = DynamoDbStreamEventSourceMapping(
            _Runtime(invoker, env),
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
