"""HTTP API Lambda REQUEST authorizer (simple responses): API key → project, session token → one session.

Two authorizers of the template use it: ApiKeyAuthorizer (identity source x-api-key, decisions cached) on
the project routes, and SessionAuthorizer (no identity source, never cached) on a session's own routes,
which accept either an x-api-key or `Authorization: Bearer sst_...`.

An HTTP API cannot shape the body of an authorizer's deny (always 403 {"message": "Forbidden"}), so bad
credentials are let through WITHOUT a project and the route middleware (session_service.edges.api) answers 401
in our error format. No route runs without a project.

A DynamoDB failure must never become a cached decision. A request with identity sources (ApiKeyAuthorizer,
whose decisions API Gateway caches per key) raises: API Gateway answers 500, and an error is never cached.
A request without any (SessionAuthorizer, never cached) is let through without a project but marked
unavailable, and the route middleware answers 503 service_unavailable, as the routes do when DynamoDB fails.

An allowed caller's context also carries its credential id and its project's rate limits (read at most
once a minute per project and process; session_service.services.limits), so a route's limiter makes no read.
"""

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from session_service.domain.errors import DependencyUnavailable, Unauthorized
from session_service.observability import logger
from session_service.runtime import authenticator, project_limits
from session_service.services.auth import (
    COMPUTE_RATE_LIMIT_CONTEXT_KEY,
    CREDENTIAL_CONTEXT_KEY,
    PROJECT_CONTEXT_KEY,
    RATE_LIMIT_CONTEXT_KEY,
    TOKEN_SESSION_CONTEXT_KEY,
    UNAVAILABLE_CONTEXT_KEY,
)

PROJECT_READ_MS = 5_500


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
    except DependencyUnavailable as failed:
        if event.get("identitySource"):
            raise  # this decision may be cached: an error never is
        return {
            "isAuthorized": True,
            "context": {PROJECT_CONTEXT_KEY: "", UNAVAILABLE_CONTEXT_KEY: "true", "reason": failed.message},
        }
    # A project's limits are read (at most once a minute) only while a read at its worst (two attempts at
    # the DynamoDB timeouts, 5 s) still fits the authorizer's Timeout; else the defaults, this once.
    time_left = context.get_remaining_time_in_millis()
    limits = project_limits().for_project(principal.project_id, may_read=time_left > PROJECT_READ_MS)
    context_values: dict[str, str | int] = {
        PROJECT_CONTEXT_KEY: principal.project_id,
        CREDENTIAL_CONTEXT_KEY: principal.credential,
        RATE_LIMIT_CONTEXT_KEY: limits.per_minute,
        COMPUTE_RATE_LIMIT_CONTEXT_KEY: limits.compute_per_minute,
    }
    if principal.session_id is not None:
        context_values[TOKEN_SESSION_CONTEXT_KEY] = principal.session_id
    return {"isAuthorized": True, "context": context_values}
