"""HTTP API Lambda REQUEST authorizer (simple responses): API key → project, session token → one session.

Two authorizers of the template use it: ApiKeyAuthorizer (identity source x-api-key, decisions cached) on
the project routes, and SessionAuthorizer (no identity source, never cached) on a session's own routes,
which accept either an x-api-key or `Authorization: Bearer sst_...`.

An HTTP API cannot shape the body of an authorizer's deny (always 403 {"message": "Forbidden"}), so bad
credentials are let through WITHOUT a project and the route middleware (session_service.api) answers 401
in our error format. No route runs without a project. A DynamoDB failure raises: API Gateway answers 500
and, unlike a result, an error is never cached.
"""

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.auth import PROJECT_CONTEXT_KEY, TOKEN_SESSION_CONTEXT_KEY
from session_service.errors import Unauthorized
from session_service.observability import logger
from session_service.runtime import authenticator


@logger.inject_lambda_context
def handler(event: dict, context: LambdaContext) -> dict:
    request = APIGatewayAuthorizerEventV2(event)
    try:
        principal = authenticator().principal_for(
            request.headers.get("x-api-key"), request.headers.get("authorization")
        )
    except Unauthorized as rejected:
        logger.info("rejected credentials", extra={"reason": rejected.message})
        return {"isAuthorized": True, "context": {PROJECT_CONTEXT_KEY: "", "reason": rejected.message}}
    context_values = {PROJECT_CONTEXT_KEY: principal.project_id}
    if principal.session_id is not None:
        context_values[TOKEN_SESSION_CONTEXT_KEY] = principal.session_id
    return {"isAuthorized": True, "context": context_values}
