"""HTTP API Lambda REQUEST authorizer (simple responses): API key → project.

An HTTP API cannot shape the body of an authorizer's deny (always 403 {"message": "Forbidden"}), so a bad
key is let through WITHOUT a project and the route middleware (session_service.api) answers 401 in our
error format. No route runs without a project. A DynamoDB failure raises: API Gateway answers 500 and,
unlike a result, an error is never cached.
"""

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.errors import Unauthorized
from session_service.observability import logger
from session_service.runtime import authenticator


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    request = APIGatewayAuthorizerEventV2(event)
    try:
        project_id = authenticator().project_for(request.headers.get("x-api-key"))
    except Unauthorized as rejected:
        logger.info("rejected API key", extra={"reason": rejected.message})
        return {"isAuthorized": True, "context": {"project_id": "", "reason": rejected.message}}
    return {"isAuthorized": True, "context": {"project_id": project_id}}
