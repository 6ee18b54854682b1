"""Execute in the session's workbench: the ExecuteFunction (as the template wires it) against the real e2b
SDK and the local E2B-compatible API, moto server and redis-server."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from e2b import Sandbox

from plugins.api import Api, Project
from plugins.teardown import TeardownPipeline


def execute(api: Api, project: Project, session_id: str, **body: object) -> Any:
    return api.call("POST", f"/v1/sessions/{session_id}/execute", key=project.api_key, body=body)


def session_boxes(e2b: Any, project: Project, session_id: str, state: str | None = None) -> list[dict]:
    return e2b.sandboxes(metadata={"project_id": project.project_id, "session_id": session_id}, state=state)


def usage_records(invoker: Any, project: Project, session_id: str) -> list[dict]:
    from session_service.runtime import container_for
    from session_service.settings import Settings

    store = container_for(Settings.from_env(invoker.env_for("ExecuteFunction"))).store
    return [e for e in store.audit_entries(project.project_id, session_id) if e["kind"] == "usage"]


def test_echo_hello_creates_the_sandbox_and_a_second_execute_reuses_it(
    api: Api, project: Project, e2b_env: Any, invoker: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    first = execute(api, project, session["id"], command="echo hello")
    assert first.status == 200, first.body
    assert first.body["stdout"] == "hello\n" and first.body["exit_code"] == 0 and first.body["stderr"] == ""
    assert first.body["timed_out"] is False and first.body["duration_ms"] >= 0
    second = execute(api, project, session["id"], command="echo again >&2; exit 3")
    assert second.status == 200 and second.body["exit_code"] == 3 and second.body["stderr"] == "again\n"
    assert second.body["sandbox_id"] == first.body["sandbox_id"]
    boxes = session_boxes(e2b_env, project, session["id"])
    assert [b["sandbox_id"] for b in boxes] == [first.body["sandbox_id"]]
    assert boxes[0]["metadata"] == {"project_id": project.project_id, "session_id": session["id"]}
    assert boxes[0]["auto_pause"] is True
    assert [(u["exit_code"], u["sandbox_id"]) for u in usage_records(invoker, project, session["id"])] == [
        (0, first.body["sandbox_id"]),
        (3, first.body["sandbox_id"]),
    ]


def test_a_paused_sandbox_is_resumed(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    sandbox_id = execute(api, project, session["id"], command="echo one").body["sandbox_id"]
    assert Sandbox.pause(sandbox_id) is True
    assert session_boxes(e2b_env, project, session["id"], state="paused")
    again = execute(api, project, session["id"], command="echo two")
    assert again.status == 200 and again.body["stdout"] == "two\n" and again.body["sandbox_id"] == sandbox_id
    assert session_boxes(e2b_env, project, session["id"], state="running")


def test_env_cwd_and_timeout(api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline) -> None:
    session = api.create(project)
    env = execute(api, project, session["id"], command="echo $GREETING", env={"GREETING": "hi"})
    assert env.body["stdout"] == "hi\n"
    execute(api, project, session["id"], command="mkdir -p work")  # in the sandbox's home, /home/user
    cwd = execute(api, project, session["id"], command="pwd", cwd="/home/user/work")
    assert cwd.status == 200 and cwd.body["stdout"].strip().endswith("work")
    missing = execute(api, project, session["id"], command="pwd", cwd="/home/user/nowhere")
    assert missing.status == 422 and "nowhere" in missing.body["error"]["message"]
    slow = execute(api, project, session["id"], command="echo started; sleep 5; echo never", timeout_s=1)
    assert slow.status == 200 and slow.body["timed_out"] is True and slow.body["exit_code"] is None
    assert "never" not in slow.body["stdout"]
    after = execute(api, project, session["id"], command="echo still here")
    assert after.body["stdout"] == "still here\n" and after.body["sandbox_id"] == slow.body["sandbox_id"]


def test_a_sandbox_that_vanished_is_replaced(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    first = execute(api, project, session["id"], command="true").body["sandbox_id"]
    assert Sandbox.kill(first) is True
    second = execute(api, project, session["id"], command="echo new")
    assert second.status == 200 and second.body["sandbox_id"] != first
    assert [b["sandbox_id"] for b in session_boxes(e2b_env, project, session["id"])] == [
        second.body["sandbox_id"]
    ]


def test_unknown_deleted_and_foreign_sessions_are_404_and_create_nothing(
    api: Api, project: Project, other_project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    assert execute(api, other_project, session["id"], command="true").status == 404
    assert execute(api, project, "ses_01jc0000000000000000000000", command="true").status == 404
    assert api.call("DELETE", f"/v1/sessions/{session['id']}", key=project.api_key).status == 200
    gone = execute(api, project, session["id"], command="true")
    assert gone.status == 404 and gone.body["error"]["code"] == "not_found"
    assert e2b_env.sandboxes() == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"command": ""},
        {"command": 1},
        {"command": "true", "timeout_s": 0},
        {"command": "true", "timeout_s": 21},
        {"command": "true", "env": {"BAD NAME": "x"}},
        {"command": "true", "env": {"A": 1}},
        {"command": "true", "cwd": "relative"},
        {"command": "true", "shell": "zsh"},
        # A NUL byte cannot reach execve: refused here, not a 503 from the sandbox.
        {"command": "echo a\u0000b"},
        {"command": "true", "env": {"A": "x\u0000"}},
        {"command": "true", "cwd": "/tmp\u0000"},
        {"command": "true", "timeout_s": 5.5},
    ],
)
def test_invalid_bodies_are_422_and_create_nothing(
    api: Api, project: Project, e2b_env: Any, body: dict, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    reply = execute(api, project, session["id"], **body)
    assert reply.status == 422 and reply.body["error"]["code"] == "validation_error"
    assert e2b_env.sandboxes() == []


def test_e2b_unavailable_is_503_and_the_session_is_untouched(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    e2b_env.inject("POST", "/v2/sandboxes", 500, times=1)
    failed = execute(api, project, session["id"], command="true")
    assert failed.status == 503 and failed.body["error"]["code"] == "sandbox_unavailable"
    e2b_env.stop()
    assert execute(api, project, session["id"], command="true").status == 503
    e2b_env.restart()
    assert api.call("GET", f"/v1/sessions/{session['id']}", key=project.api_key).body == session
    assert e2b_env.sandboxes() == []
    assert execute(api, project, session["id"], command="echo ok").body["stdout"] == "ok\n"


def test_concurrent_first_executes_leave_one_sandbox(
    api: Api, project: Project, e2b_env: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(execute(api, project, session["id"], command="echo x"))
        )
        for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status for r in results] == [200] * 6
    assert len({r.body["sandbox_id"] for r in results}) == 1
    assert len(session_boxes(e2b_env, project, session["id"])) == 1


def test_the_fence_kills_a_sandbox_created_while_the_session_was_deleted(
    api: Api, project: Project, e2b_env: Any, invoker: Any, teardown: TeardownPipeline
) -> None:
    """The exact interleaving, deterministically, with real services: the sandbox is created at E2B, the
    real DELETE commits (and its teardown runs and finds nothing attached), then the fence write is tried."""
    from session_service.adapters.dynamodb.sessions import DynamoSessionStore
    from session_service.domain.errors import NotFound
    from session_service.domain.requests import ExecuteRequest
    from session_service.runtime import container_for
    from session_service.services.workbench import Workbench
    from session_service.settings import Settings

    session = api.create(project)
    services = container_for(Settings.from_env(invoker.env_for("ExecuteFunction")))

    class DeleteBeforeTheFence(DynamoSessionStore):
        def attach_sandbox(
            self, project_id: str, session_id: str, sandbox_id: str, *, replaces: str | None
        ) -> bool:
            assert len(session_boxes(e2b_env, project, session_id)) == 1  # created at E2B...
            assert api.call("DELETE", f"/v1/sessions/{session_id}", key=project.api_key).status == 200
            return super().attach_sandbox(project_id, session_id, sandbox_id, replaces=replaces)

    bench = Workbench(DeleteBeforeTheFence(services.tables), services.sandboxes, services.queue)
    with pytest.raises(NotFound):
        bench.execute(project.project_id, session["id"], ExecuteRequest(command="echo never"))
    assert session_boxes(e2b_env, project, session["id"]) == []  # ...and killed by the fence at once
    assert all(not r.failed_ids for r in teardown.drain())
    assert session_boxes(e2b_env, project, session["id"]) == []


def test_an_unreadable_e2b_key_secret_is_503_not_500(
    api: Api, project: Project, e2b_env: Any, invoker: Any, teardown: TeardownPipeline
) -> None:
    session = api.create(project)
    missing = invoker.env_for("ExecuteFunction")["E2B_API_KEY_SECRET_ARN"] + "-missing"
    reply = api.call(
        "POST",
        f"/v1/sessions/{session['id']}/execute",
        key=project.api_key,
        body={"command": "true"},
        env={"E2B_API_KEY_SECRET_ARN": missing},
    )
    assert reply.status == 503 and reply.body["error"]["code"] == "sandbox_unavailable"
    assert e2b_env.sandboxes() == []
