"""Sessions table stream → cache: every committed change of a session reaches Redis, retried until it lands.

Partial batch responses: a record Redis did not take is reported in batchItemFailures and the event source
mapping delivers it (and those after it on the shard) again; the request path's cache epoch covers the
time until then.
"""

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.adapters.dynamodb.streams import session_change
from session_service.observability import logger, metrics, traced
from session_service.runtime import cache_sync

processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


def invalidate(record: DynamoDBRecord) -> None:
    change = session_change(record.raw_event)
    if change is not None:
        cache_sync().apply(change)


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=invalidate, processor=processor, context=context
    )
