"""The one module that owns Logger, Tracer and Metrics.

Names come from the POWERTOOLS_* environment the template sets; the defaults (the same values) keep metrics
valid when this module is imported before a function's environment exists (tests, the local stack).

The Tracer is created on first use: it imports the X-Ray SDK, about 210 ms of a cold start (measured with
`python -X importtime`), which functions that do not trace (the authorizer) should not pay.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

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


def annotate(key: str, value: str) -> None:
    """Annotate the current trace segment, if this function traces at all."""
    if _tracer is not None:
        _tracer.put_annotation(key=key, value=value)


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
