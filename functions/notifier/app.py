"""Sessions and messages table streams → the live feed (WebSocket) and the event bus.

Partial batch responses with bisect-on-error: a record whose delivery must be retried (the management API
or the bus throttled or unreachable) fails alone and comes back; a crash after a commit never loses an
event, since the stream holds the record until it is delivered.
"""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.adapters.dynamodb.streams import domain_event
from session_service.observability import logger, metrics, traced
from session_service.runtime import container, notifier

processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def notify(record: DynamoDBRecord) -> None:
    event = domain_event(record.raw_event, container().settings.messages_table)
    if event is not None:
        notifier().deliver(event)


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    notifier().new_batch()
    return process_partial_response(event=event, record_handler=notify, processor=processor, context=context)
