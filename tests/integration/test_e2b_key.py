"""Until the operator puts the E2B key, every teardown fails: it must say so, at once, in the log.

The stack creates the secret with a placeholder (template.yaml, E2bApiKeySecret); a real key that E2B refuses
is the other way to get it wrong. Both end in a log line naming the secret to set.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import pytest

from devstack.e2b_local import LocalE2B
from devstack.provision import _generated_secret
from devstack.template import Template
from session_service.adapters.e2b_sandboxes import E2BSandboxProvider
from session_service.adapters.secrets import is_placeholder
from session_service.domain.errors import SandboxUnavailable
from session_service.domain.ids import new_project_id, new_session_id
from session_service.settings import Settings


def _placeholder(template: Template) -> str:
    """What CloudFormation puts in the secret: the template's GenerateSecretString, made as it makes it."""
    return _generated_secret(template.secrets["E2bApiKeySecret"]["GenerateSecretString"])


def test_the_stacks_placeholder_is_recognised_and_a_key_is_not(template: Template) -> None:
    assert is_placeholder(_placeholder(template))
    assert not is_placeholder("e2b_" + "0123456789abcdef" * 2)
    assert not is_placeholder('{"not": "ours"}')


def test_a_teardown_before_the_key_is_set_fails_with_a_line_that_says_so(
    template: Template, invoker: Any, aws_env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(Name=f"e2b-unset-{uuid.uuid4().hex}", SecretString=_placeholder(template))[
        "ARN"
    ]
    body = json.dumps(
        {"project_id": new_project_id(), "session_id": new_session_id(), "deleted_at": "2026-01-01T00:00:00Z"}
    )
    record = {"messageId": "m1", "receiptHandle": "r1", "body": body, "attributes": {},
              "messageAttributes": {}, "eventSource": "aws:sqs", "awsRegion": "us-east-1",
              "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "md5OfBody": ""}  # fmt: skip
    event = {"Records": [record]}
    result = invoker.invoke(
        "TeardownFunction", event, env_overrides={"E2B_API_KEY_SECRET_ARN": arn, "E2B_API_KEY": ""}
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    logged = caplog.text
    assert "still holds the placeholder" in logged and "put-secret-value" in logged, logged


def test_a_key_that_e2b_refuses_is_named_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    strict = LocalE2B(api_key="e2b_the_right_key").start()
    try:
        settings = Settings(e2b_api_url=strict.url, e2b_sandbox_url=strict.url)
        provider = E2BSandboxProvider(settings, api_key="e2b_a_wrong_key")
        with pytest.raises(SandboxUnavailable, match="rejected our API key"):
            provider.list_session_sandboxes("prj_x", "ses_x", 10)
        with pytest.raises(SandboxUnavailable, match="rejected our API key"):
            provider.kill("sbx_x")
        assert "E2B rejected the API key (401)" in caplog.text
    finally:
        strict.close()
