"""The models of every table bound to one configuration (`Tables(settings)`; the models are declared in
session_service.adapters.dynamodb.models), the write condition of a live session, and the one place that
turns PynamoDB's errors into domain outcomes. A lost condition is the caller's business (TagTaken,
WriteConflict, a 404); anything else that stops DynamoDB from answering is DependencyUnavailable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.expressions.condition import Condition

from session_service.adapters.dynamodb.models import (
    api_keys,
    audit,
    connections,
    keys,
    messages,
    projects,
    sessions,
    tokens,
    tools,
)
from session_service.adapters.dynamodb.models.base import bind
from session_service.domain.errors import DependencyUnavailable
from session_service.observability import logger
from session_service.settings import Settings

CONDITION_FAILED = "ConditionalCheckFailedException"
_LOST_RACE = {"ConditionalCheckFailed", "TransactionConflict"}


@contextmanager
def dynamodb_errors(operation: str) -> Iterator[None]:
    """Anything PynamoDB raises that we did not turn into a domain outcome means DynamoDB is unavailable."""
    try:
        yield
    except PynamoDBException as error:
        logger.exception("DynamoDB call failed", extra={"operation": operation})
        raise DependencyUnavailable("the session store is unavailable; retry the request") from error


def condition_failed(error: PynamoDBException) -> bool:
    """Whether DynamoDB refused the write's condition. Not PynamoDB's `cause_response_code`: when the call
    timed out, the cause carries `response = None` and that property raises AttributeError, which escaped
    `dynamodb_errors` and turned a DynamoDB timeout into a 500 (found by the fault suite, moto hung)."""
    response = getattr(error.cause, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") == CONDITION_FAILED


def lost_race(error: TransactWriteError) -> bool:
    """A transaction cancelled because a condition failed or another transaction got there first."""
    reasons = [reason.code for reason in (error.cancellation_reasons or []) if reason is not None]
    return any(code in _LOST_RACE for code in reasons)


class Tables:
    """Every table's model, bound to one configuration's table names, endpoint and timeouts."""

    def __init__(self, settings: Settings) -> None:
        meta: dict[str, Any] = {
            "region": settings.region,
            "host": settings.aws_endpoint_url,
            "connect_timeout_seconds": settings.dynamodb_connect_timeout_seconds,
            "read_timeout_seconds": settings.dynamodb_read_timeout_seconds,
            "max_retry_attempts": settings.dynamodb_max_retries,
        }
        self.connection = Connection(
            region=settings.region,
            host=settings.aws_endpoint_url,
            connect_timeout_seconds=settings.dynamodb_connect_timeout_seconds,
            read_timeout_seconds=settings.dynamodb_read_timeout_seconds,
            max_retry_attempts=settings.dynamodb_max_retries,
        )
        self.SessionItem = bind(sessions.SessionItem, settings.sessions_table, meta)
        self.ProjectItem = bind(projects.ProjectItem, settings.projects_table, meta)
        self.AuditItem = bind(audit.AuditItem, settings.audit_table, meta)
        self.ApiKeyItem = bind(api_keys.ApiKeyItem, settings.api_keys_table, meta)
        self.TokenItem = bind(tokens.TokenItem, settings.tokens_table, meta)
        self.ToolItem = bind(tools.ToolItem, settings.tools_table, meta)
        self.MessageItem = bind(messages.MessageItem, settings.messages_table, meta)
        self.ConnectionItem = bind(connections.ConnectionItem, settings.connections_table, meta)
        self.KeyItem = bind(keys.KeyItem, settings.keys_table, meta)


def live_session(item: type[sessions.SessionItem] = sessions.SessionItem) -> Condition:
    """The write side of session_service.services.liveness: the session item exists and has no tombstone.
    Every write that must not outlive its session (a token, a message, a feed connection, a PATCH) is
    conditioned on exactly this."""
    return item.session_id.exists() & item.deleted_at.does_not_exist()
