"""No session path bypasses the one liveness guard (session_service.services.liveness).

Every operation of the API whose path names a session (read from the generated document, so a route added
later is covered without editing this file) is called once, validly, on a live session with the guard's
functions wrapped: each must reach the guard with that session's id — `require_live` (it read the
session), `require_written` (its write was conditioned on the session being live) or, for a GET answered
from the cache, `require_id` before the cache (which holds only what the guard let through and is
tombstoned by DELETE). Then the same operation on a deleted session is 404.

The mutation check done by hand for issue 21 (docs/architecture.md, "One liveness guard"): making
`is_live` ignore `deleted_at` fails this test's second half for every read route, and the 404-after-DELETE
tests of test_sessions_api, test_messages, test_tools, test_mcp_endpoint and test_idempotency.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_edge_contract import operations, valid_request

from plugins.api import Api, Project
from session_service.edges.openapi import build_document
from session_service.services import liveness

GUARD = ("require_id", "require_live", "require_written")


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(guard function, session id) for every call of the guard while the test runs."""
    seen: list[tuple[str, str]] = []

    def spy(name: str, real: Callable[..., Any], session_at: int) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append((name, args[session_at]))
            return real(*args, **kwargs)

        return wrapper

    for name, session_at in (("require_id", 0), ("require_live", 2), ("require_written", 1)):
        monkeypatch.setattr(liveness, name, spy(name, getattr(liveness, name), session_at))
    return seen


def session_operations() -> list[tuple[str, str, dict[str, Any]]]:
    found = [op for op in operations(build_document()) if "{session_id}" in op[1]]
    assert len(found) >= 10  # get, patch, delete, execute, tokens, tools, tool call, mcp, messages x2
    return found


@pytest.mark.parametrize(("method", "path", "operation"), session_operations(), ids=lambda v: str(v)[:40])
def test_every_session_operation_passes_through_the_guard(
    api: Api, project: Project, guarded: list[tuple[str, str]], method: str, path: str, operation: dict
) -> None:
    concrete, body = valid_request(api, project, path, operation)
    session_id = concrete.split("/")[3]
    guarded.clear()
    headers = {"mcp-protocol-version": "2025-06-18"}
    reply = api.call(method, concrete, key=project.api_key, body=body, headers=headers)
    assert reply.status < 300, (method, path, reply.status, reply.body)
    assert any(sid == session_id for _, sid in guarded), f"{method} {path} never asked the guard: {guarded}"

    if method != "DELETE":
        assert api.call("DELETE", f"/v1/sessions/{session_id}", key=project.api_key).status == 200
    guarded.clear()
    gone = api.call(method, concrete, key=project.api_key, body=body, headers=headers)
    assert gone.status == 404, (method, path, gone.status, gone.body)
    assert any(sid == session_id for _, sid in guarded), f"{method} {path}: 404 not from the guard"
