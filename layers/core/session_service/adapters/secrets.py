"""Secrets from AWS Secrets Manager through Powertools Parameters (cached per container)."""

from __future__ import annotations

import json

from aws_lambda_powertools.utilities import parameters

from session_service.domain.errors import SandboxUnavailable
from session_service.observability import logger

SECRET_MAX_AGE_SECONDS = 300
NOT_SET = (
    "The E2B API key secret still holds the placeholder the stack created: put the E2B key in it (aws "
    "secretsmanager put-secret-value --secret-id <stack output E2bApiKeySecretArn> --secret-string <key>). "
    "Until then no sandbox can be created and every teardown fails and is dead-lettered."
)


def is_placeholder(value: str) -> bool:
    """The template generates JSON with a "placeholder" field (E2bApiKeySecret); no E2B key is JSON."""
    if not value.lstrip().startswith("{"):
        return False
    try:
        document = json.loads(value)
    except ValueError:
        return False
    return isinstance(document, dict) and "placeholder" in document


def secret_value(arn: str) -> str:
    try:
        value = str(parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS))
    except Exception as error:  # GetParameterError and whatever the SDK raises underneath
        logger.exception("could not read the E2B key secret")
        raise SandboxUnavailable("the sandbox service is not configured or unreachable") from error
    if is_placeholder(value):
        logger.error(NOT_SET, extra={"secret_arn": arn})
        raise SandboxUnavailable("the sandbox service is not configured: the E2B API key secret is not set")
    return value
