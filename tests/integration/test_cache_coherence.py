"""Cache coherence under the faults production has: a hung Redis (SIGSTOP: connections open, nothing
answers), a stopped one, and a writer that never got to write the cache. The functions run with their
template environment against real moto and a real redis-server; the sessions stream is the real (moto)
stream, fed to CacheInvalidatorFunction by the event source mapping."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from plugins.api import Api, Project
from plugins.streams import StreamPipeline
from session_service.adapters.redis_cache import TOMBSTONE, cache_key, parse_entry
from session_service.runtime import container_for
from session_service.settings import Settings

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP/SIGCONT")


@contextlib.contextmanager
def hung(server: Any, at_least: float) -> Iterator[None]:
    """Redis stops answering (the process is stopped; its sockets stay open) for at least `at_least` s."""
    os.kill(server.pid, signal.SIGSTOP)
    started = time.monotonic()
    try:
        yield
        time.sleep(max(0.0, at_least - (time.monotonic() - started)))
    finally:
        os.kill(server.pid, signal.SIGCONT)


def raw(redis_server: Any, project: Project, session_id: str) -> str | None:
    client = redis.Redis(host=redis_server.host, port=redis_server.port, decode_responses=True)
    return client.get(cache_key(project.project_id, session_id))


def cached_version(redis_server: Any, project: Project, session_id: str) -> int | None:
    value = raw(redis_server, project, session_id)
    entry = parse_entry(value) if value not in (None, TOMBSTONE) else None
    return entry[0] if entry else None


def test_lost_invalidations_in_a_hung_redis_never_serve_old_state(
    api: Api, project: Project, redis_server: Any, cache_invalidator: StreamPipeline
) -> None:
    """The scenario of the issue: sessions cached, Redis hangs, a PATCH and a DELETE return 200 while their
    cache writes are lost, Redis resumes with the old entries. No old version and no deleted session is
    served, even before the stream's invalidations land."""
    key = project.api_key
    patched, deleted, other = api.create(project), api.create(project), api.create(project)
    for session in (patched, deleted, other):
        assert api.call("GET", f"/v1/sessions/{session['id']}", key=key).status == 200  # cached
    with hung(redis_server, at_least=1.5):
        # The first write of each function times out on its open connection (Redis may still run it when
        # it resumes); the second finds the breaker open and never reaches Redis: lost for certain.
        assert (
            api.call("PATCH", f"/v1/sessions/{patched['id']}", key=key, body={"metadata": {"n": 1}}).status
            == 200
        )
        assert (
            api.call("PATCH", f"/v1/sessions/{patched['id']}", key=key, body={"metadata": {"n": 2}}).status
            == 200
        )
        assert api.call("DELETE", f"/v1/sessions/{other['id']}", key=key).status == 200
        assert api.call("DELETE", f"/v1/sessions/{deleted['id']}", key=key).status == 200
    assert cached_version(redis_server, project, patched["id"]) in (1, 2)  # not 3: that write was lost
    assert cached_version(redis_server, project, deleted["id"]) == 1  # the tombstone was lost

    reply = api.call("GET", f"/v1/sessions/{patched['id']}", key=key)
    assert (reply.status, reply.body["version"], reply.body["metadata"]) == (200, 3, {"n": 2})
    assert api.call("GET", f"/v1/sessions/{deleted['id']}", key=key).status == 404
    assert api.call("GET", f"/v1/sessions/{other['id']}", key=key).status == 404

    assert cache_invalidator.drain().delivered  # the backstop lands too
    assert raw(redis_server, project, deleted["id"]) == TOMBSTONE
    assert cached_version(redis_server, project, patched["id"]) == 3


def test_every_committed_change_reaches_the_cache_from_the_stream(
    api: Api, project: Project, redis_server: Any, cache_invalidator: StreamPipeline
) -> None:
    key = project.api_key
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    api.call("PATCH", path, key=key, body={"metadata": {"a": 1}})
    assert cache_invalidator.drain().delivered >= 2
    # The PATCH filled version 2 itself; the stream's floor for version 2 leaves that body in place.
    assert cached_version(redis_server, project, session["id"]) == 2
    assert api.call("DELETE", path, key=key).status == 200
    assert cache_invalidator.drain().delivered >= 1
    assert raw(redis_server, project, session["id"]) == TOMBSTONE


def test_invalidations_wait_while_redis_is_down_and_land_when_it_is_back(
    api: Api, project: Project, redis_server: Any, redis_down: Any, cache_invalidator: StreamPipeline
) -> None:
    key = project.api_key
    session = api.create(project)
    cache_invalidator.drain()
    with redis_down():
        api.call("PATCH", f"/v1/sessions/{session['id']}", key=key, body={"metadata": {"a": 1}})
        first = cache_invalidator.drain()
        assert first.retried and not first.delivered and not first.discarded
    assert cache_invalidator.drain().delivered == 1
    value = raw(redis_server, project, session["id"])
    assert value is not None and parse_entry(value) == (2, None, "")  # a floor: nothing older than v2


def test_a_writer_that_died_before_its_cache_write_is_covered_by_the_stream(
    api: Api, project: Project, invoker: Any, redis_server: Any, cache_invalidator: StreamPipeline
) -> None:
    """The crash case the epoch cannot cover (no process lived to raise it): the stream does."""
    key = project.api_key
    session = api.create(project)
    path = f"/v1/sessions/{session['id']}"
    assert api.call("GET", path, key=key).body["version"] == 1  # cached
    cache_invalidator.drain()
    writer = container_for(Settings.from_env(invoker.env_for("UpdateSessionFunction")))
    current = writer.store.get(project.project_id, session["id"])
    assert current is not None
    metadata = {"by": "a writer that crashed"}
    writer.store.update(
        current.evolve(
            version=2,
            metadata=metadata,
            sealed_metadata=writer.cipher.seal(project.project_id, session["id"], "metadata", metadata),
        ),
        previous_version=1,
        config_changed=False,
    )
    assert cache_invalidator.drain().delivered == 1
    reply = api.call("GET", path, key=key)
    assert (reply.body["version"], reply.body["metadata"]) == (2, {"by": "a writer that crashed"})
