"""WebSocket $disconnect: forget the connection (best effort: API Gateway does not guarantee this call, so
rows also expire, and a send to a gone connection removes it)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.observability import logger
from session_service.runtime import feed_connections


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    feed_connections().disconnect(event["requestContext"]["connectionId"])
    return {"statusCode": 200}
