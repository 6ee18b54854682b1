"""Secrets from AWS Secrets Manager through Powertools Parameters (cached per container)."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters

from session_service.errors import SandboxUnavailable
from session_service.observability import logger

SECRET_MAX_AGE_SECONDS = 300


def secret_value(arn: str) -> str:
    try:
        return str(parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS))
    except Exception as error:  # GetParameterError and whatever the SDK raises underneath
        logger.exception("could not read the E2B key secret")
        raise SandboxUnavailable("the sandbox service is not configured or unreachable") from error
