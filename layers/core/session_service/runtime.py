"""The composition root: builds services and adapters from the environment, once per configuration.

Adapters are created lazily so a function pays only for what it uses (the authorizer never imports redis).
The cache is keyed by the Settings value, so a changed environment gets fresh clients (tests, local stack).
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import TYPE_CHECKING

from session_service.settings import Settings

if TYPE_CHECKING:
    from session_service.adapters.dynamodb import Tables
    from session_service.auth import Admin, Authenticator
    from session_service.ports import ResponseCache
    from session_service.service import SessionService


class Container:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def tables(self) -> Tables:
        from session_service.adapters.dynamodb import Tables

        return Tables(self.settings)

    @cached_property
    def cache(self) -> ResponseCache:
        if not self.settings.cache_enabled:
            from session_service.adapters.redis_cache import NoCache

            return NoCache()
        from session_service.adapters.redis_cache import RedisResponseCache

        return RedisResponseCache(self.settings)

    @cached_property
    def sessions(self) -> SessionService:
        from session_service.adapters.dynamodb import DynamoSessionStore
        from session_service.service import SessionService

        return SessionService(DynamoSessionStore(self.tables), self.cache)

    @cached_property
    def authenticator(self) -> Authenticator:
        from session_service.adapters.dynamodb import DynamoKeyStore
        from session_service.auth import Authenticator

        return Authenticator(DynamoKeyStore(self.tables))

    @cached_property
    def admin(self) -> Admin:
        from session_service.adapters.dynamodb import DynamoKeyStore, DynamoProjectStore
        from session_service.auth import Admin

        return Admin(DynamoProjectStore(self.tables), DynamoKeyStore(self.tables))


@lru_cache(maxsize=8)
def container_for(settings: Settings) -> Container:
    return Container(settings)


def container() -> Container:
    return container_for(Settings.from_env())


def session_service() -> SessionService:
    return container().sessions


def authenticator() -> Authenticator:
    return container().authenticator


def admin_service() -> Admin:
    return container().admin
