"""SQS-triggered teardown: kill a deleted session's E2B sandboxes (running and paused), purge its content.

Partial batch responses: a record that fails (or is poison) is reported in batchItemFailures and comes back
after the visibility timeout; after maxReceiveCount it lands in the dead-letter queue. Other records of
the batch are unaffected. A slow E2B cannot turn the batch into a timeout (which would redeliver every
record): a record starts only while enough time is left, its run starts no kill past a deadline, and what
was not started is reported as failed, so it comes back (settings: teardown_min_remaining_ms,
teardown_kill_reserve_ms).
"""

import time

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.domain.errors import TeardownIncomplete
from session_service.domain.requests import TeardownMessage
from session_service.observability import annotate, count, logger, metrics, traced
from session_service.runtime import container, teardown_service

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def tear_down(record: SQSRecord, lambda_context: LambdaContext) -> str:
    settings = container().settings
    remaining_ms = lambda_context.get_remaining_time_in_millis()
    if remaining_ms < settings.teardown_min_remaining_ms:
        count("TeardownsDeferred")
        raise TeardownIncomplete(f"not started: {remaining_ms} ms left in this invocation")
    message = TeardownMessage.model_validate_json(record.body)
    annotate("session_id", message.session_id)
    deadline = time.monotonic() + (remaining_ms - settings.teardown_kill_reserve_ms) / 1000
    return teardown_service().run(message, deadline=deadline).outcome


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=tear_down, processor=processor, context=context
    )
