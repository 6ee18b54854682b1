"""HTTP edge shared by every route function: the resolver, the caller's project, request bodies, and the
ONE place where domain errors become HTTP statuses and JSON error bodies.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from session_service.domain.errors import (
    BadRequest,
    Conflict,
    DependencyUnavailable,
    DomainError,
    IdempotencyInProgress,
    IdempotencyKeyReused,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    SandboxUnavailable,
    Unauthorized,
    ValidationFailed,
    VersionConflict,
)
from session_service.domain.requests import MAX_BODY_BYTES
from session_service.observability import logger, metrics, traced
from session_service.runtime import rate_limiter
from session_service.services import liveness
from session_service.services.auth import (
    COMPUTE_RATE_LIMIT_CONTEXT_KEY,
    CREDENTIAL_CONTEXT_KEY,
    PROJECT_CONTEXT_KEY,
    RATE_LIMIT_CONTEXT_KEY,
    TOKEN_SESSION_CONTEXT_KEY,
    UNAVAILABLE_CONTEXT_KEY,
)
from session_service.services.limits import LimitDecision, RateLimits

M = TypeVar("M", bound=BaseModel)

STATUS: dict[type[DomainError], int] = {
    BadRequest: 400,
    Unauthorized: 401,
    NotFound: 404,
    VersionConflict: 409,
    Conflict: 409,
    IdempotencyInProgress: 409,
    PayloadTooLarge: 413,
    ValidationFailed: 422,
    IdempotencyKeyReused: 422,
    RateLimited: 429,
    DependencyUnavailable: 503,
    SandboxUnavailable: 503,
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: list | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps({"error": error}),
        headers=dict(headers or {}),
    )


Reject = Callable[[int, str, str], Response]


def principal_required(reject: Reject = lambda status, code, message: error_response(status, code, message)):
    """The middleware every route has: no route runs without a principal. The authorizer sets a project
    only for a valid, unrevoked API key or a valid, unexpired session token, and a session token reaches
    only its own session's routes: anything else is 404 (another session) or 401 (a project route), and
    nothing runs; 503 when the authorizer could not check the credentials. `reject` shapes the refusal
    (the MCP route answers in JSON-RPC)."""

    def middleware(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        lambda_context = (
            (app.current_event.request_context.authorizer.get_lambda or {}) if app.current_event else {}
        )
        project_id = lambda_context.get(PROJECT_CONTEXT_KEY)
        if not project_id and lambda_context.get(UNAVAILABLE_CONTEXT_KEY):
            message = "the credentials could not be checked (the store is unavailable); retry the request"
            return reject(503, DependencyUnavailable.code, message)
        if not project_id:
            reason = lambda_context.get("reason") or "missing or invalid API key"
            return reject(401, Unauthorized.code, str(reason))
        token_session = lambda_context.get(TOKEN_SESSION_CONTEXT_KEY)
        if token_session:
            path_session = (app.current_event.path_parameters or {}).get("session_id")
            if path_session is None:
                return reject(401, Unauthorized.code, "a session token cannot use project routes")
            if not liveness.token_may_reach(token_session, path_session):
                return reject(404, NotFound.code, liveness.NOT_FOUND)
        app.append_context(project_id=project_id)
        return next_middleware(app)

    return middleware


GENERAL, COMPUTE = "general", "compute"


class RouteApp(APIGatewayHttpResolver):
    """The resolver of one route function, and the rate limit its requests take: GENERAL, COMPUTE (also the
    tighter compute bucket: execute, tool calls), or None (the route limits itself, as MCP does per
    JSON-RPC message)."""

    def __init__(self, rate_limit: str | None) -> None:
        super().__init__()
        self.rate_limit = rate_limit


def _limits_in(lambda_context: dict[str, Any]) -> tuple[str, RateLimits] | None:
    credential = lambda_context.get(CREDENTIAL_CONTEXT_KEY)
    general, compute = (
        lambda_context.get(RATE_LIMIT_CONTEXT_KEY),
        lambda_context.get(COMPUTE_RATE_LIMIT_CONTEXT_KEY),
    )
    if not credential or not general or not compute:
        return None
    return str(credential), RateLimits(int(general), int(compute))


def caller_limits(app: APIGatewayHttpResolver) -> tuple[str, RateLimits] | None:
    """The caller's credential and its project's limits, as the authorizer resolved them (None: a context
    without them, e.g. an authorizer decision cached before they existed; such a request is not limited)."""
    return _limits_in(app.current_event.request_context.authorizer.get_lambda or {})


# The decision on the request being handled, taken by `entrypoint` before the resolver sees the event and
# applied by the `rate_limited` middleware (a context variable: per thread, per invocation).
_decision: ContextVar[LimitDecision | RateLimited | None] = ContextVar("rate_limit_decision", default=None)


def _take_tokens(event: dict[str, Any], kind: str | None) -> LimitDecision | RateLimited | None:
    lambda_context = ((event.get("requestContext") or {}).get("authorizer") or {}).get("lambda") or {}
    project_id, caller, limiter = lambda_context.get(PROJECT_CONTEXT_KEY), _limits_in(lambda_context), None
    if kind is not None and project_id and caller is not None:
        limiter = rate_limiter()
    if limiter is None or caller is None:
        return None
    try:
        return limiter.check(str(project_id), caller[0], caller[1], compute=kind == COMPUTE)
    except RateLimited as refused:
        return refused


def rate_limited(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    """After the principal check: a refused request is 429 (RateLimited, mapped below) and runs nothing;
    an allowed one's response carries the RateLimit-* headers."""
    decision = _decision.get()
    if isinstance(decision, RateLimited):
        raise decision
    response = next_middleware(app)
    if decision is not None:
        response.headers.update(decision.headers())
    return response


def build_app(reject: Reject | None = None, *, rate_limit: str | None = GENERAL) -> RouteApp:
    app = RouteApp(rate_limit)
    middlewares = [principal_required(reject) if reject else principal_required()]
    if rate_limit is not None:
        middlewares.append(rate_limited)
    app.use(middlewares=middlewares)

    @app.exception_handler(DomainError)
    def _domain_error(error: DomainError) -> Response:
        status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 500)
        headers = error.headers if isinstance(error, RateLimited) else None
        return error_response(status, error.code, error.message, error.details, headers)

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; it has been logged")

    @app.not_found
    def _no_route(error: Exception) -> Response:
        return error_response(404, "not_found", "no such route")

    return app


def caller_project(app: APIGatewayHttpResolver) -> str:
    return str(app.context["project_id"])


MAX_JSON_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _OutOfRange(ValueError):
    pass


def _finite_float(text: str) -> float:
    """1e999 is valid JSON but no float: Python would keep it as inf and answer it back as `Infinity`,
    which is not JSON."""
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfRange(text)
    return value


def _depth(value: Any) -> int:
    """Nesting depth, without recursion (a hostile body must not exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(current, dict):
            stack.extend((child, level + 1) for child in current.values())
        elif isinstance(current, list):
            stack.extend((child, level + 1) for child in current)
    return deepest


def parse_body(
    app: APIGatewayHttpResolver, model: type[M], *, optional: bool = False, max_bytes: int = MAX_BODY_BYTES
) -> M:
    """Size, encoding, JSON and depth checks, then strict model validation: 413, 400 or 422 before
    anything is changed. With `optional`, no body at all means an empty object (all defaults)."""
    event = app.current_event
    if event.body is None or event.body == "":
        if optional:
            return validate(model, {}, location="body")
        raise BadRequest("a JSON object body is required")
    try:
        raw = event.decoded_body or ""
    except (UnicodeDecodeError, ValueError) as error:
        raise BadRequest("request body is not UTF-8 text") from error
    if len(raw.encode()) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    try:
        data = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError as error:
        raise BadRequest("request body is nested too deeply") from error
    except _OutOfRange as error:
        raise ValidationFailed(
            "a number in the request body is out of range",
            details=[{"loc": ["body"], "msg": f"{error} is not a finite double", "type": "number_range"}],
        ) from error
    except ValueError as error:
        raise BadRequest(f"request body is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise ValidationFailed(
            "request body must be a JSON object",
            details=[{"loc": ["body"], "msg": "must be a JSON object", "type": "object_type"}],
        )
    if _depth(data) > MAX_JSON_DEPTH:
        raise ValidationFailed(
            f"request body is nested more than {MAX_JSON_DEPTH} levels deep",
            details=[{"loc": ["body"], "msg": "too deeply nested", "type": "json_depth"}],
        )
    if "\\ud" in raw.lower() and not _encodable(data):  # only a \uD800-\uDFFF escape can make one
        raise ValidationFailed(
            "a string in the request body contains a lone surrogate (not a Unicode character)",
            details=[{"loc": ["body"], "msg": "lone surrogate escape", "type": "unicode"}],
        )
    return validate(model, data, location="body")


def _encodable(data: Any) -> bool:
    """JSON text may escape half of a surrogate pair alone (\\ud800); such a string is no Unicode text and
    cannot be stored, sealed or sent back as UTF-8."""
    try:
        json.dumps(data, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return False
    return True


def parse_query(app: APIGatewayHttpResolver, model: type[M]) -> M:
    params = dict(app.current_event.query_string_parameters or {})
    return validate(model, params, location="query")


def validate(model: type[M], data: dict[str, Any], *, location: str) -> M:
    try:
        return model.model_validate(data)
    except PydanticValidationError as error:
        details = [
            {
                "loc": [location, *[str(part) for part in item["loc"]]],
                "msg": item["msg"],
                "type": item["type"],
            }
            for item in error.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ValidationFailed("request is invalid", details=details) from error


def entrypoint(app: APIGatewayHttpResolver) -> Callable[[dict, LambdaContext], dict]:
    """The Lambda handler for a route function: logging context, metrics, (optional) SDK tracing, the
    rate limiter's one Redis call, then the resolver.

    The limiter is asked here, before the resolver takes the event, because Powertools keeps the current
    event on the resolver *class* (BaseRouter.current_event), shared by every resolver of a process: on
    Lambda one invocation at a time, but the in-process test invoker runs concurrent invocations in
    threads, and I/O between the resolver taking an event and the handler reading it would let another
    thread's event in."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @traced
    @metrics.log_metrics
    def handler(event: dict, context: LambdaContext) -> dict:
        kind = app.rate_limit if isinstance(app, RouteApp) else None
        taken = _decision.set(_take_tokens(event, kind))
        try:
            return app.resolve(event, context)
        finally:
            _decision.reset(taken)

    return handler
