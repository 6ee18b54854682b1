"""Unit tests run with sockets turned off: anything that tries the network fails loudly."""

import socket
from collections.abc import Iterator

import pytest

from fakes import FakeCache, FakeQueue, FakeSandboxes, FakeSessionStore
from session_service.observability import metrics
from session_service.services.sessions import SessionService


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests must not open sockets")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def _no_leftover_metrics() -> Iterator[None]:
    """Metrics counted outside a handler would be flushed by the next handler another test runs."""
    yield
    metrics.clear_metrics()


@pytest.fixture
def store() -> FakeSessionStore:
    return FakeSessionStore()


@pytest.fixture
def cache() -> FakeCache:
    return FakeCache()


@pytest.fixture
def queue() -> FakeQueue:
    return FakeQueue()


@pytest.fixture
def sandboxes() -> FakeSandboxes:
    return FakeSandboxes()


@pytest.fixture
def service(store: FakeSessionStore, cache: FakeCache, queue: FakeQueue) -> SessionService:
    return SessionService(store, cache, queue)
