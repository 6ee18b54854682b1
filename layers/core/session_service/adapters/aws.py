"""One way to make a boto3 client: the region and endpoint from Settings (moto locally), and a time budget
per client, each adapter's own, so that a slow AWS service cannot push a request past its function's
timeout."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from session_service.settings import Settings


def aws_client(
    service: str,
    settings: Settings,
    *,
    connect: float,
    read: float,
    attempts: int,
    endpoint_url: str | None = None,
) -> Any:
    """`endpoint_url` overrides the stack's (the WebSocket API's management endpoint)."""
    return boto3.client(  # type: ignore[call-overload]  # the service is a parameter here
        service,
        region_name=settings.region,
        endpoint_url=endpoint_url or settings.aws_endpoint_url,
        config=Config(
            connect_timeout=connect, read_timeout=read, retries={"max_attempts": attempts, "mode": "standard"}
        ),
    )
