"""Secrets from AWS Secrets Manager through Powertools Parameters (cached per container)."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters

SECRET_MAX_AGE_SECONDS = 300


def secret_value(arn: str) -> str:
    return str(parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS))
