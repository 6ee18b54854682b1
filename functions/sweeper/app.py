"""Scheduled sweeper: re-enqueue teardowns still pending after the grace period (sparse index, no Scan)."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.observability import logger, metrics, traced
from session_service.runtime import sweeper


@logger.inject_lambda_context
@traced
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    return {"reenqueued": sweeper().sweep()}
