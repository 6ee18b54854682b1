"""Pytest fixtures for the local E2B API: one server per session, clean state and E2B_* variables per test.

Loaded as a plugin (`pytest_plugins = ["plugins.e2b"]`). Tests that talk to E2B through the real SDK take
`e2b_env`; `local_e2b` alone is the started server for tests that only need its URL or controls.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.e2b_local import LocalE2B


@pytest.fixture(scope="session")
def local_e2b() -> Iterator[LocalE2B]:
    """A fast reaper so that timeout tests can use 1-second sandbox timeouts."""
    api = LocalE2B(reaper_interval=0.05).start()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def e2b_env(local_e2b: LocalE2B, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalE2B]:
    """Point the SDK at the local API (never via E2B_DEBUG, which skips lifecycle calls) with no leftovers."""
    local_e2b.start()
    local_e2b.reset()
    monkeypatch.setenv("E2B_API_KEY", local_e2b.api_key)
    monkeypatch.setenv("E2B_API_URL", local_e2b.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", local_e2b.url)
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    monkeypatch.delenv("E2B_ACCESS_TOKEN", raising=False)
    yield local_e2b
    local_e2b.start()  # a test that stopped the server must not leave it down for the next one
    local_e2b.reset()
