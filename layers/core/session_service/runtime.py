"""The composition root: builds services and adapters from the environment, once per configuration.

Adapters are created lazily so a function pays only for what it uses (the authorizer never imports redis).
The cache is keyed by the Settings value, so a changed environment gets fresh clients (tests, local stack).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from session_service import snapstart
from session_service.settings import Settings

if TYPE_CHECKING:
    import redis

    from session_service.adapters.dynamodb.connections import DynamoConnectionStore
    from session_service.adapters.dynamodb.content_keys import DynamoContentKeyStore
    from session_service.adapters.dynamodb.messages import DynamoMessageStore
    from session_service.adapters.dynamodb.sessions import DynamoSessionStore
    from session_service.adapters.dynamodb.tables import Tables
    from session_service.adapters.dynamodb.tokens import DynamoTokenStore
    from session_service.adapters.dynamodb.tools import DynamoToolStore
    from session_service.adapters.idempotency import PowertoolsIdempotency
    from session_service.adapters.websocket import ApiGatewayConnectionPusher
    from session_service.domain.ports import ContentCipher, ResponseCache, SandboxProvider, TeardownQueue
    from session_service.services.auth import Admin, Authenticator
    from session_service.services.cache_sync import CacheSync
    from session_service.services.feed import FeedConnections, Notifier
    from session_service.services.limits import ProjectLimits, RateLimiter
    from session_service.services.messages import MessageService
    from session_service.services.sessions import SessionService
    from session_service.services.teardown import Sweeper, Teardown
    from session_service.services.tokens import TokenService
    from session_service.services.tools import ToolCatalog, ToolRouter
    from session_service.services.workbench import Workbench


class Container:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def tables(self) -> Tables:
        from session_service.adapters.dynamodb.tables import Tables

        return Tables(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        """One client (one connection pool) for the response cache and the rate limiter."""
        from session_service.adapters.redis_cache import redis_client

        return redis_client(self.settings)

    @cached_property
    def rate_limiter(self) -> RateLimiter | None:
        """None where no Redis is configured (a function outside the HTTP API's routes)."""
        if not self.settings.cache_enabled:
            return None
        from session_service.adapters.redis_limits import RedisTokenBuckets
        from session_service.services.limits import RateLimiter

        return RateLimiter(RedisTokenBuckets(self.settings, self.redis))

    @cached_property
    def project_limits(self) -> ProjectLimits:
        from session_service.services.limits import ProjectLimits, RateLimits

        projects = None
        if self.settings.projects_table:
            from session_service.adapters.dynamodb.projects import DynamoProjectStore

            projects = DynamoProjectStore(self.tables)
        defaults = RateLimits(
            self.settings.rate_limit_per_minute, self.settings.compute_rate_limit_per_minute
        )
        return ProjectLimits(projects, defaults, ttl_seconds=self.settings.project_limits_ttl_seconds)

    @cached_property
    def idempotency(self) -> PowertoolsIdempotency:
        """Imported only when a request carries an Idempotency-Key (Powertools' utility and a boto3 client
        are cold-start cost the other requests do not pay)."""
        from session_service.adapters.idempotency import PowertoolsIdempotency

        return PowertoolsIdempotency(self.settings)

    @cached_property
    def cache(self) -> ResponseCache:
        if not self.settings.cache_enabled:
            from session_service.adapters.redis_cache import NoCache

            return NoCache()
        from session_service.adapters.dynamodb.cache_epoch import DynamoCacheEpochStore
        from session_service.adapters.redis_cache import RedisResponseCache
        from session_service.services.cache_epoch import CacheEpoch

        settings = self.settings
        epoch = CacheEpoch(
            DynamoCacheEpochStore(self.tables, settings.cache_epoch_copies),
            copies=settings.cache_epoch_copies,
            refresh_seconds=settings.cache_epoch_refresh_seconds,
            margin_ms=settings.cache_epoch_margin_ms,
        )
        return RedisResponseCache(settings, epoch, client=self.redis)

    @cached_property
    def cache_sync(self) -> CacheSync:
        from session_service.adapters.redis_cache import RedisCacheInvalidator
        from session_service.services.cache_sync import CacheSync

        return CacheSync(RedisCacheInvalidator(self.settings))

    @cached_property
    def store(self) -> DynamoSessionStore:
        from session_service.adapters.dynamodb.sessions import DynamoSessionStore

        return DynamoSessionStore(self.tables)

    @cached_property
    def content_key_store(self) -> DynamoContentKeyStore:
        from session_service.adapters.dynamodb.content_keys import DynamoContentKeyStore

        return DynamoContentKeyStore(self.tables)

    @cached_property
    def cipher(self) -> ContentCipher:
        """Content sealed under per-session keys whenever the template configures them (it always does)."""
        settings = self.settings
        if not settings.keys_table and not settings.content_key_id:
            from session_service.services.content_keys import PlainContent

            return PlainContent()
        if not (settings.keys_table and settings.content_key_id):
            raise RuntimeError("KEYS_TABLE and CONTENT_KEY_ID are configured together or not at all")
        from session_service.adapters.aesgcm import AesGcm
        from session_service.adapters.kms import KmsMasterKey
        from session_service.services.content_keys import ContentKeys

        return ContentKeys(
            self.content_key_store,
            KmsMasterKey(settings),
            aead=AesGcm,
            cache_seconds=settings.content_key_cache_seconds,
        )

    @cached_property
    def queue(self) -> TeardownQueue:
        from session_service.adapters.sqs import SqsTeardownQueue

        return SqsTeardownQueue(self.settings)

    @cached_property
    def sandboxes(self) -> SandboxProvider:
        from session_service.adapters.e2b_sandboxes import E2BSandboxProvider

        return E2BSandboxProvider(self.settings, self.e2b_api_key())

    def e2b_api_key(self) -> str:
        """From Secrets Manager (cached) when the template names a secret, as in the cloud; a key given
        directly (E2B_API_KEY) is only the fallback for code run outside the template."""
        if self.settings.e2b_api_key_secret_arn:
            from session_service.adapters.secrets import secret_value

            return secret_value(self.settings.e2b_api_key_secret_arn)  # raises SandboxUnavailable
        if self.settings.e2b_api_key:
            return self.settings.e2b_api_key
        raise RuntimeError("neither E2B_API_KEY_SECRET_ARN nor E2B_API_KEY is configured")

    @cached_property
    def sessions(self) -> SessionService:
        from session_service.services.sessions import SessionService

        queue = self.queue if self.settings.teardown_queue_url else None
        return SessionService(
            self.store,
            self.cache,
            queue,
            cipher=self.cipher,
            tombstone_retention_days=self.settings.tombstone_retention_days,
        )

    @cached_property
    def teardown(self) -> Teardown:
        from session_service.services.teardown import Teardown

        return Teardown(
            self.store,
            self.sandboxes,
            self.queue,
            self.token_store if self.settings.tokens_table else None,
            self.message_store if self.settings.messages_table else None,
            self.content_key_store if self.settings.keys_table else None,
            max_sandboxes_per_run=self.settings.teardown_max_sandboxes_per_run,
            kill_concurrency=self.settings.teardown_kill_concurrency,
        )

    @cached_property
    def workbench(self) -> Workbench:
        from session_service.services.workbench import Workbench

        return Workbench(
            self.store,
            self.sandboxes,
            self.queue,
            default_template=self.settings.sandbox_template,
            default_timeout_s=self.settings.sandbox_timeout_seconds,
            late_create_grace_seconds=self.settings.sandbox_late_create_grace_seconds,
        )

    @cached_property
    def tool_store(self) -> DynamoToolStore:
        from session_service.adapters.dynamodb.tools import DynamoToolStore

        return DynamoToolStore(self.tables)

    @cached_property
    def tool_catalog(self) -> ToolCatalog:
        from session_service.services.tools import ToolCatalog

        return ToolCatalog(self.tool_store)

    @cached_property
    def tool_router(self) -> ToolRouter:
        from session_service.services.tools import ToolRouter

        return ToolRouter(self.tool_store, self.workbench, output_cap=self.settings.command_output_cap_bytes)

    @cached_property
    def message_store(self) -> DynamoMessageStore:
        from session_service.adapters.dynamodb.messages import DynamoMessageStore

        return DynamoMessageStore(self.tables)

    @cached_property
    def messages(self) -> MessageService:
        from session_service.services.messages import MessageService

        return MessageService(self.store, self.message_store, cipher=self.cipher)

    @cached_property
    def connection_store(self) -> DynamoConnectionStore:
        from session_service.adapters.dynamodb.connections import DynamoConnectionStore

        return DynamoConnectionStore(self.tables)

    @cached_property
    def connection_pusher(self) -> ApiGatewayConnectionPusher:
        from session_service.adapters.websocket import ApiGatewayConnectionPusher

        return ApiGatewayConnectionPusher(self.settings)

    @cached_property
    def feed_connections(self) -> FeedConnections:
        from session_service.services.feed import FeedConnections

        return FeedConnections(self.authenticator, self.connection_store)

    @cached_property
    def notifier(self) -> Notifier:
        from session_service.services.feed import Notifier

        publisher = None
        if self.settings.event_bus_name:
            from session_service.adapters.eventbridge import EventBridgePublisher

            publisher = EventBridgePublisher(self.settings)
        return Notifier(self.connection_store, self.connection_pusher, publisher)

    @cached_property
    def sweeper(self) -> Sweeper:
        from session_service.services.teardown import Sweeper

        return Sweeper(self.store, self.queue, grace_seconds=self.settings.teardown_grace_seconds)

    @cached_property
    def token_store(self) -> DynamoTokenStore:
        from session_service.adapters.dynamodb.tokens import DynamoTokenStore

        return DynamoTokenStore(self.tables)

    @cached_property
    def tokens(self) -> TokenService:
        from session_service.services.tokens import TokenService

        return TokenService(self.token_store)

    @cached_property
    def authenticator(self) -> Authenticator:
        from session_service.adapters.dynamodb.api_keys import DynamoKeyStore
        from session_service.services.auth import Authenticator

        tokens = self.tokens if self.settings.tokens_table else None
        return Authenticator(DynamoKeyStore(self.tables), tokens)

    @cached_property
    def admin(self) -> Admin:
        from session_service.adapters.dynamodb.api_keys import DynamoKeyStore
        from session_service.adapters.dynamodb.projects import DynamoProjectStore
        from session_service.services.auth import Admin

        return Admin(DynamoProjectStore(self.tables), DynamoKeyStore(self.tables))

    def warm(self) -> None:
        """SnapStart's before-snapshot hook (session_service.snapstart): import what this function's requests
        import and build the services its environment configures, with their SDK clients, so that a
        restored copy does not pay for them on its first request. It opens no connection. A step that fails
        is logged and left to the first request, as without SnapStart (a failing hook fails the publish)."""
        s = self.settings
        steps: list[tuple[bool, Callable[[], object]]] = [
            (any(_table_names(s)), lambda: self.tables.connection.client),  # botocore loads DynamoDB's model
            (bool(s.sessions_table), lambda: self.sessions),  # the store, the cache's client, the queue's
            (bool(s.redis_host), lambda: self.rate_limiter),
            (bool(s.projects_table and s.api_keys_table), lambda: self.project_limits),
            # The content keys' KMS client and AES-GCM (no key is read: keys are per project and session).
            (bool(s.keys_table and s.content_key_id), lambda: self.cipher),
            (bool(s.keys_table and s.content_key_id), _import_aead),
            (bool(s.api_keys_table), lambda: self.authenticator),
            (bool(s.sessions_table and s.messages_table), lambda: self.messages),
            (bool(s.tools_table), lambda: self.tool_catalog),
            # The e2b SDK is imported, but the provider is built on the first request: it reads the E2B key
            # from its secret, which must not be in the snapshot (and may still be the placeholder then).
            (_e2b(s), lambda: importlib.import_module("session_service.adapters.e2b_sandboxes")),
            (bool(s.teardown_queue_url and s.sessions_table), lambda: self.sweeper),
            (bool(s.redis_host), lambda: self.cache_sync),
            (bool(s.connections_table and s.api_keys_table), lambda: self.feed_connections),
            (bool(s.connections_table and s.websocket_endpoint), lambda: self.notifier),
            (True, _build_models),
        ]
        for wanted, step in steps:
            if wanted:
                try:
                    step()
                except Exception as error:
                    from session_service.observability import logger

                    logger.warning("SnapStart warm-up step failed", extra={"error": repr(error)})


def _table_names(settings: Settings) -> list[str]:
    return [
        settings.sessions_table,
        settings.projects_table,
        settings.api_keys_table,
        settings.audit_table,
        settings.tokens_table,
        settings.tools_table,
        settings.messages_table,
        settings.connections_table,
        settings.keys_table,
        settings.idempotency_table,
    ]


def _e2b(settings: Settings) -> bool:
    return bool(settings.e2b_api_key_secret_arn or settings.e2b_api_key)


def _import_aead() -> object:
    return importlib.import_module("session_service.adapters.aesgcm")


def _build_models() -> None:
    """The request and response models are built on first use (defer_build): build them now instead."""
    from pydantic import BaseModel

    from session_service.domain import requests

    for value in vars(requests).values():
        if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel:
            value.model_rebuild(force=True)


@lru_cache(maxsize=64)  # one per function where one process runs them all (Settings.function_name)
def container_for(settings: Settings) -> Container:
    return Container(settings)


# The container of each environment this process has seen, by the environment's variables as the OS gave
# them (bytes, undecoded): reading and validating Settings costs more than a cached GET's own work (issue 29's
# profile: 0.36 ms a call, twice a request, on the slower machine), while a snapshot and a lookup cost a few
# microseconds. On Lambda one process has one environment; the local stack and the tests run several
# functions' environments in turn in one process, and each is recognised here.
_BY_ENVIRONMENT: dict[tuple[tuple[bytes, bytes], ...], Container] = {}


def container() -> Container:
    snapshot = tuple(os.environ._data.items())  # type: ignore[attr-defined]
    found = _BY_ENVIRONMENT.get(snapshot)
    if found is None:
        if len(_BY_ENVIRONMENT) >= 64:
            _BY_ENVIRONMENT.clear()
        found = _BY_ENVIRONMENT[snapshot] = container_for(Settings.from_env())
    return found


def session_service() -> SessionService:
    return container().sessions


def authenticator() -> Authenticator:
    return container().authenticator


def stack_outputs(stack_name: str, region: str | None = None) -> dict[str, str]:
    """A deployed stack's outputs (table names), for the admin CLI's --stack."""
    from session_service.adapters.stack import stack_outputs as read

    return read(stack_name, region)


def admin_service() -> Admin:
    return container().admin


def teardown_service() -> Teardown:
    return container().teardown


def sweeper() -> Sweeper:
    return container().sweeper


def workbench() -> Workbench:
    return container().workbench


def cache_sync() -> CacheSync:
    return container().cache_sync


def tokens() -> TokenService:
    return container().tokens


def tool_catalog() -> ToolCatalog:
    return container().tool_catalog


def tool_router() -> ToolRouter:
    return container().tool_router


def messages() -> MessageService:
    return container().messages


def feed_connections() -> FeedConnections:
    return container().feed_connections


def notifier() -> Notifier:
    return container().notifier


def rate_limiter() -> RateLimiter | None:
    return container().rate_limiter


def project_limits() -> ProjectLimits:
    return container().project_limits


def idempotency() -> PowertoolsIdempotency:
    return container().idempotency


if snapstart.wanted():  # Lambda is initialising this function for a SnapStart snapshot
    snapstart.register(lambda: container().warm())
