"""WebSocket $default: the feed is one-way (server to client); anything a client sends is accepted and
ignored, so that keep-alive pings from clients do not close their connection."""

from aws_lambda_powertools.utilities.typing import LambdaContext


def handler(event: dict, context: LambdaContext) -> dict:
    return {"statusCode": 200}
