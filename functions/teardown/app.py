"""SQS-triggered teardown: kill a deleted session's E2B sandboxes (running and paused), purge its content.

Partial batch responses: a record that fails (or is poison) is reported in batchItemFailures and comes back
after the visibility timeout; after maxReceiveCount it lands in the dead-letter queue. Other records of
the batch are unaffected.
"""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.models import TeardownMessage
from session_service.observability import annotate, logger, metrics, traced
from session_service.runtime import teardown_service

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def tear_down(record: SQSRecord) -> str:
    message = TeardownMessage.model_validate_json(record.body)
    annotate("session_id", message.session_id)
    return teardown_service().run(message).outcome


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=tear_down, processor=processor, context=context
    )
