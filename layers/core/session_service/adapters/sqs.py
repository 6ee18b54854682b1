"""The teardown queue on SQS. A failed send is an outcome (False), never an exception: the DELETE has
already committed its tombstone, and the sweeper re-enqueues whatever a lost send left pending."""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from session_service.adapters.aws import aws_client
from session_service.domain.entities import Tombstone
from session_service.observability import count, logger
from session_service.settings import Settings


class SqsTeardownQueue:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.teardown_queue_url
        # ≤ 2 x (0.5 + 1) = 3 s: a slow queue must not push a committed DELETE past its function timeout.
        self._client = aws_client("sqs", settings, connect=0.5, read=1, attempts=2)

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
