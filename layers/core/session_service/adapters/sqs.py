"""The teardown queue on SQS. A failed send is an outcome (False), never an exception: the DELETE has
already committed its tombstone, and the sweeper re-enqueues whatever a lost send left pending."""

from __future__ import annotations

import json

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from session_service.domain.entities import Tombstone
from session_service.observability import count, logger
from session_service.settings import Settings


class SqsTeardownQueue:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.teardown_queue_url
        self._client = boto3.client(
            "sqs",
            region_name=settings.region,
            endpoint_url=settings.aws_endpoint_url,
            # ≤ 2 x (0.5 + 1) = 3 s: a slow queue must not push a committed DELETE past its function timeout.
            config=Config(
                connect_timeout=0.5, read_timeout=1, retries={"max_attempts": 2, "mode": "standard"}
            ),
        )

    def send(self, tombstone: Tombstone, *, delay_seconds: int = 0) -> bool:
        if not self._url:
            logger.error("no teardown queue configured")
            return False
        try:
            self._client.send_message(
                QueueUrl=self._url,
                MessageBody=json.dumps(tombstone.to_message()),
                DelaySeconds=max(0, min(delay_seconds, 900)),
            )
        except (BotoCoreError, ClientError) as error:
            logger.warning(
                "teardown enqueue failed", extra={"session_id": tombstone.session_id, "error": repr(error)}
            )
            count("TeardownEnqueueErrors")
            return False
        return True
