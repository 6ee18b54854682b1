"""Typed settings, read from the environment the template gives each function.

Read per invocation (cheap) so that the composition root can cache clients per configuration: the same
process then serves a changed environment correctly, which the local stack and the tests rely on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from session_service.domain.output import DEFAULT_OUTPUT_CAP, MAX_OUTPUT_CAP


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    region: str = "us-east-1"
    # Part of the configuration's identity: in the cloud each function is its own process; where one process
    # runs several (the local stack, the tests), each still gets its own clients and key caches.
    function_name: str = ""
    aws_endpoint_url: str | None = None

    sessions_table: str = ""
    projects_table: str = ""
    api_keys_table: str = ""
    audit_table: str = ""
    tokens_table: str = ""
    tools_table: str = ""
    messages_table: str = ""
    connections_table: str = ""
    # Per-session content keys (session_service.services.content_keys): the keys table and the stack's KMS
    # key. Both set: content is sealed. Neither (code run outside the template): stored plain, format 0.
    keys_table: str = ""
    content_key_id: str | None = None
    content_key_cache_seconds: Annotated[float, Field(ge=0, le=900)] = 300.0
    # The live feed: the WebSocket API's management endpoint, and the event bus for other systems.
    websocket_endpoint: str | None = None
    event_bus_name: str | None = None
    event_source: str = "com.sessionservice.sessions"

    redis_host: str | None = None
    redis_port: int = 6379
    redis_tls: bool = False
    redis_timeout_seconds: float = 0.25
    cache_ttl_seconds: int = 30
    # A cache tombstone must outlive any read that could still be in flight when the DELETE returned.
    cache_tombstone_ttl_seconds: int = 86_400
    # After a Redis failure, skip Redis for this long (reads go to DynamoDB; writers raise the epoch).
    redis_breaker_seconds: float = 1.0
    # The cache epoch (session_service.services.cache_epoch): copies in the projects table, how often a
    # process re-reads it, and how far past a failed write's commit it is set (covers clock skew).
    cache_epoch_copies: int = 4
    cache_epoch_refresh_seconds: float = 1.0
    cache_epoch_margin_ms: int = 2000

    # Rate limits (session_service.services.limits), in requests a minute per API key or session token: the
    # authorizer's defaults for a project without its own, and how long it trusts a project's record.
    rate_limit_per_minute: Annotated[int, Field(ge=1)] = 600
    compute_rate_limit_per_minute: Annotated[int, Field(ge=1)] = 60
    project_limits_ttl_seconds: float = 60.0
    # Idempotency-Key records (Powertools idempotency on DynamoDB, expired by the table's TTL).
    idempotency_table: str = ""
    idempotency_ttl_seconds: int = 86_400

    # Time budget: (1 + retries) x (connect + read) must fit the function's timeout with room for the cache
    # and the queue. Worst case per call here: 2 x (1.0 + 1.5) = 5 s; the DELETE (10 s) adds ≤ 3 s of SQS.
    dynamodb_connect_timeout_seconds: float = 1.0
    dynamodb_read_timeout_seconds: float = 1.5
    dynamodb_max_retries: int = 1

    teardown_queue_url: str | None = None
    tombstone_retention_days: int = 30
    teardown_grace_seconds: int = 120
    # One teardown run kills at most this many sandboxes of a session; the rest are re-enqueued.
    teardown_max_sandboxes_per_run: int = 100
    teardown_kill_concurrency: int = 8
    # The teardown function's time guard (functions/teardown): it starts a record only while at least
    # `min_remaining` is left (a record's worst case: a DynamoDB read and write at their timeouts, ~5 s each,
    # and one E2B listing at its 10 s timeout), and a run starts no kill once only `kill_reserve` is left
    # (one kill at E2B's 10 s timeout plus the write that records it). What is not started is retried.
    teardown_min_remaining_ms: int = 25_000
    teardown_kill_reserve_ms: int = 15_000

    # E2B: in the cloud the key comes from Secrets Manager; locally it may be given directly.
    e2b_api_key_secret_arn: str | None = None
    e2b_api_key: str | None = None
    e2b_api_url: str | None = None
    e2b_sandbox_url: str | None = None
    e2b_request_timeout_seconds: float = 10.0
    # Each of stdout/stderr keeps at most this much (JSON-escaped text; session_service.domain.output).
    command_output_cap_bytes: Annotated[int, Field(ge=1024, le=MAX_OUTPUT_CAP)] = DEFAULT_OUTPUT_CAP
    sandbox_template: str = "base"
    sandbox_timeout_seconds: int = 300
    # After a create that failed on our side, a teardown message this much later kills the session's
    # sandboxes other than its recorded one (E2B may finish the create after our call gave up; SQS delays
    # a message by at most 900 s).
    sandbox_late_create_grace_seconds: Annotated[int, Field(ge=0, le=900)] = 120

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, str] = {}
        for name in cls.model_fields:
            key = name.upper()
            if env.get(key):
                values[name] = env[key]
        if env.get("AWS_LAMBDA_FUNCTION_NAME"):
            values["function_name"] = env["AWS_LAMBDA_FUNCTION_NAME"]
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        if region:
            values["region"] = region
        return cls.model_validate(values)

    @property
    def cache_enabled(self) -> bool:
        return bool(self.redis_host)
