"""SnapStart: a snapshot taken after init is restored into many execution environments. Simulated here as the
runtime does it, in a child interpreter: the function's module is imported with
AWS_LAMBDA_INITIALIZATION_TYPE=snap-start, the before-snapshot hooks run (with the network refused: nothing
may be connected in a snapshot), then the process forks twice (two copies of one memory image, as two
restored environments are) and each copy runs the after-restore hooks and makes ids, tokens and keys. fork()
re-seeds Python's `random` in a child, which a restore does not: each copy puts back the snapshot's state.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

SIMULATION = textwrap.dedent(
    """
    import json, os, random, socket, sys, uuid

    def refuse(*args, **kwargs):
        raise RuntimeError("no network before the snapshot")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    if sys.argv[2] == "no-library":
        sys.modules["snapshot_restore_py"] = None  # as outside Lambda: the import fails
    sys.path.insert(0, sys.argv[3])
    import app  # the function's module, as Lambda's init imports it
    from session_service.services import auth, tokens
    from session_service.domain import ids
    from session_service import runtime

    try:
        import snapshot_restore_py
        before, after = snapshot_restore_py.get_before_snapshot(), snapshot_restore_py.get_after_restore()
    except ImportError:
        before, after = [], []
    for func, args, kwargs in reversed(before):  # the runtime runs them in reverse order of registration
        func(*args, **kwargs)
    built = sorted(name for name in vars(runtime.container()) if name != "settings")
    snapshot_prng = random.getstate()

    children = []
    for _ in range(2):
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            # fork() re-seeds `random` in the child (os.register_at_fork); a snapshot restore runs no such
            # handler: the copy starts with the state the snapshot holds.
            random.setstate(snapshot_prng)
            if sys.argv[1] == "hooks":
                for func, args, kwargs in after:
                    func(*args, **kwargs)
            values = {
                "session_ids": [ids.new_session_id() for _ in range(50)],
                "tokens": [tokens.generate_token()[1] for _ in range(20)],
                "api_keys": [auth.generate_key()[1] for _ in range(20)],
                "uuids": [uuid.uuid4().hex for _ in range(20)],
                "random": [random.random() for _ in range(5)],
            }
            os.write(write, json.dumps(values).encode())
            os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            children.append(json.loads(pipe.read()))
        os.waitpid(pid, 0)
    print(json.dumps({"registered": [len(before), len(after)], "built": built,
                      "e2b_imported": "e2b" in sys.modules, "children": children}))
    """
)

ENV = {
    "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
    # ExecuteFunction's variables (template.yaml), with names instead of references.
    "SESSIONS_TABLE": "sessions",
    "AUDIT_TABLE": "audit",
    "TEARDOWN_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/teardown",
    "E2B_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:e2b",
    "REDIS_HOST": "cache.example.internal",
    "REDIS_TLS": "true",
    "KEYS_TABLE": "keys",
    "CONTENT_KEY_ID": "00000000-0000-0000-0000-000000000000",
    "IDEMPOTENCY_TABLE": "idempotency",
    "POWERTOOLS_SERVICE_NAME": "session-service",
    "LOG_LEVEL": "WARNING",
}


def simulate(mode: str, library: str = "library", function: str = "execute", **env: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", SIMULATION, mode, library, str(ROOT / "functions" / function)],
        env={**ENV, **env},
        cwd=ROOT / "functions" / function,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warm-up step failed" not in done.stdout + done.stderr, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _shared(children: list[dict[str, list[Any]]], key: str) -> set[Any]:
    first, second = (set(child[key]) for child in children)
    return first & second


def test_ids_and_tokens_made_after_a_simulated_restore_do_not_repeat() -> None:
    result = simulate("hooks")
    assert result["registered"] == [1, 1]
    children = result["children"]
    for key in ("session_ids", "tokens", "api_keys", "uuids"):
        assert not _shared(children, key), f"two restored copies made the same {key}"
    # Python's PRNG (botocore's retry jitter, our write retries, the catalog copy) is re-seeded per copy.
    assert children[0]["random"] != children[1]["random"]


def test_without_the_after_restore_hook_the_snapshot_would_share_the_prng() -> None:
    """The hazard the hook removes: two copies of one snapshot draw the same "random" numbers. Ids and
    tokens never depended on it (os.urandom on every call)."""
    children = simulate("no-hooks")["children"]
    assert children[0]["random"] == children[1]["random"]
    for key in ("session_ids", "tokens", "api_keys", "uuids"):
        assert not _shared(children, key)


def test_before_the_snapshot_the_function_is_warmed_without_any_connection() -> None:
    result = simulate("hooks")  # the network is refused in the child: building may not connect
    assert {"tables", "store", "cache", "queue", "sessions", "rate_limiter", "cipher"} <= set(result["built"])
    assert result["e2b_imported"]  # its import is most of an E2B function's first request
    assert "sandboxes" not in result["built"]  # that reads the E2B key: on the first request, never before


def test_without_snapshot_restore_py_the_function_still_imports_and_registers_nothing() -> None:
    result = simulate("hooks", library="no-library")
    assert result["registered"] == [0, 0]
    assert result["built"] == []


def test_an_ordinary_cold_start_registers_nothing() -> None:
    result = simulate("hooks", AWS_LAMBDA_INITIALIZATION_TYPE="on-demand")
    assert result["registered"] == [0, 0]
    assert result["built"] == []
