"""The fault suite's dev stack, and its figures in the terminal summary of every run (`make test`,
`make soak`), not only with -s.

One dev stack for the whole suite, started as `make dev` starts it plus what the cloud has too: the API-key
authorizer's decisions are cached (`--authorizer-cache`), and a dead redis-server is replaced by an empty one
(`--restart-delay`, as ElastiCache replaces a node). Two parameters differ from their defaults: the check
after a failed sandbox create runs 3 s after it instead of 120 s (`LateCreateGraceSeconds`), so that the
suite can watch it, and the authorizer cache keeps a decision for an hour instead of a minute
(`AuthorizerCacheTtlSeconds`), so that no decision expires while the suite has DynamoDB hung: an authorizer
that cannot read the keys fails, and API Gateway answers that with a 500 of its own (never cached; see
functions/authorizer), which is not what the moto tests are about.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from faults.faultkit import LATE_CREATE_GRACE, RESTART_DELAY, FaultyStack

from plugins.services import TEMPLATE, launch_devstack

_FIGURES: list[str] = []


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultyStack]:
    state_dir = tmp_path_factory.mktemp("faulty-devstack")
    process, endpoints = launch_devstack(
        state_dir,
        "--template", str(TEMPLATE),
        "--quiet",
        "--authorizer-cache",
        "--restart-delay", str(RESTART_DELAY),
        "--parameter-overrides",
        f"LateCreateGraceSeconds={LATE_CREATE_GRACE}",
        "AuthorizerCacheTtlSeconds=3600",
    )  # fmt: skip
    faulty = FaultyStack(process, endpoints)
    with pytest.MonkeyPatch.context() as patch:
        # The test process reads the stack's tables (moto takes any credentials); never a real account.
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        try:
            faulty.warm_up()
            yield faulty
        finally:
            faulty.resume_all()  # a failed test must not leave a service stopped
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@pytest.fixture
def figures() -> list[str]:
    """Lines a test appends are printed in the run's terminal summary, under "fault suite"."""
    return _FIGURES


def log_tail(stack: FaultyStack, limit: int = 3000) -> str:
    path = Path(stack.endpoints["log"])
    return path.read_text(errors="replace")[-limit:] if path.exists() else ""


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _FIGURES:
        terminalreporter.section("fault suite")
        for line in _FIGURES:
            terminalreporter.write_line(line)
