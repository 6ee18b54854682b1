"""How the DynamoDB adapters read PynamoDB's errors: a refused condition is an outcome, a timeout is
DependencyUnavailable (503) — never an AttributeError out of the error handling (a 500)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from pynamodb.exceptions import PynamoDBException, UpdateError

from session_service.adapters.dynamodb.tables import condition_failed, dynamodb_errors
from session_service.domain.errors import DependencyUnavailable


def refused() -> UpdateError:
    reply = {
        "Error": {"Code": "ConditionalCheckFailedException", "Message": "The conditional request failed"}
    }
    return UpdateError("refused", cause=ClientError(reply, "UpdateItem"))  # type: ignore[arg-type]


def timed_out() -> UpdateError:
    return UpdateError("timed out", cause=ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))


def test_a_refused_condition_is_recognised() -> None:
    assert condition_failed(refused())


def test_a_timeout_is_not_a_refused_condition_and_becomes_unavailable() -> None:
    """The shape every conditional write has: a timeout (its cause's response is None) must come out of
    the adapter as DependencyUnavailable."""
    assert not condition_failed(timed_out())
    with pytest.raises(DependencyUnavailable), dynamodb_errors("update"):
        try:
            raise timed_out()
        except PynamoDBException as error:
            if condition_failed(error):
                pytest.fail("a timeout read as a refused condition")
            raise
