"""WebSocket $connect: a live-feed connection, authenticated by an x-api-key header (the project's events)
or a `token` query parameter holding a session token (that session's events), for clients that cannot set
headers. Any other answer than 200 refuses the connection."""

from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.domain.errors import NotFound, Unauthorized
from session_service.observability import logger
from session_service.runtime import feed_connections
from session_service.services.feed import rejected


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    query = event.get("queryStringParameters") or {}
    try:
        feed_connections().connect(
            event["requestContext"]["connectionId"], headers.get("x-api-key"), query.get("token")
        )
    except (Unauthorized, NotFound) as refused:
        return {"statusCode": rejected(refused)}
    return {"statusCode": 200}
