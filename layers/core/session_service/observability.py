"""The one module that owns Logger, Tracer and Metrics.

Names come from the POWERTOOLS_* environment the template sets; the defaults (the same values) keep metrics
valid when this module is imported before a function's environment exists (tests, the local stack).
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME") or "session-service"
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "SessionService"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
