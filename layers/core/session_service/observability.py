"""The one module that owns Logger, Tracer and Metrics.

Names come from the POWERTOOLS_* environment the template sets; the defaults (the same values) keep metrics
valid when this module is imported before a function's environment exists (tests, the local stack).

Tracing: every function has Lambda active tracing (template `Tracing: Active`), which records each request's
path through API Gateway and Lambda (initialization, invocation, overhead) with no SDK in the function. The
X-Ray SDK (Powertools Tracer) adds subsegments for each AWS call and our annotations, but importing it costs
about 185 ms of every cold start (`python -X importtime`: aws_xray_sdk.core, which also pulls in
botocore.session), so it is off unless a stack turns it on (`TRACE_SDK=true`, the XRaySdkTracing
parameter, which also attaches the TracingLayer that ships the SDK); then it is imported at initialization
and wraps every handler.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools.logging import Logger
from aws_lambda_powertools.metrics import Metrics, MetricUnit

if TYPE_CHECKING:
    from aws_lambda_powertools.tracing import Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "session-service"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "SessionService"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
_tracer: Tracer | None = None


def tracer() -> Tracer:
    global _tracer
    if _tracer is None:
        from aws_lambda_powertools.tracing import Tracer

        _tracer = Tracer(service=SERVICE)
    return _tracer


F = TypeVar("F", bound=Callable[..., Any])


def sdk_tracing() -> bool:
    return os.environ.get("TRACE_SDK", "").lower() == "true"


def traced(handler: F) -> F:
    """The handler wrapped by the X-Ray SDK's capture when SDK tracing is on; the handler itself otherwise."""
    if not sdk_tracing():
        return handler
    # Never the response or the error as trace metadata: a response carries session content (metadata,
    # messages, command output), which X-Ray would keep for 30 days, out of reach of the content keys.
    return cast(F, tracer().capture_lambda_handler(handler, capture_response=False, capture_error=False))


def annotate(key: str, value: str) -> None:
    """Annotate the current trace segment, if this function traces at all."""
    if _tracer is not None:
        _tracer.put_annotation(key=key, value=value)


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
