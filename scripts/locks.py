# ruff: noqa: S603 - runs uv with arguments built here
"""Every environment the project makes comes from a committed lock; this makes the locks and checks them.

    python scripts/locks.py lock [--upgrade]   # `make lock`: every lock from its inputs (nothing else does)
    python scripts/locks.py check              # `make check-locks` (and make lint): fails on anything stale

The environments and their locks (hashes included in each):
    .tools/uv       locks/uv.txt                uv itself, installed by pip --require-hashes
    .venv           uv.lock                     pyproject.toml and its dev extra: the tests, the dev stack
    .tools/<name>   locks/tools/<name>/uv.lock  one per tool (SAM CLI, checkov, schemathesis, MCP clients)
    the layers      layers/constraints.txt      from uv.lock, for python3.13 on arm64 (scripts/layers.py)

`check` fails when a lock is stale against its inputs (`uv lock --check`: a dependency added to a
pyproject.toml without `make lock`; layers/constraints.txt not what uv.lock gives) or when an environment
that exists here holds anything but what its lock says (`uv sync --locked --check`: a version bumped by hand
in a lock, a package pip-installed into the venv, a venv made from an older lock).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".tools" / "uv" / "bin" / "uv"
UV_PIN = ROOT / "locks" / "uv.txt"
TOOL_LOCKS = ROOT / "locks" / "tools"


class LockError(RuntimeError):
    """A lock or an environment is not what it must be; the message says what and what to run."""


@dataclass(frozen=True)
class Environment:
    """A uv project (its pyproject.toml and uv.lock) and the environment made from it."""

    name: str
    project: Path
    venv: Path
    extras: tuple[str, ...] = ()


def environments(root: Path = ROOT) -> list[Environment]:
    tools = sorted(path.parent for path in (root / "locks" / "tools").glob("*/pyproject.toml"))
    return [
        Environment("dev", root, root / ".venv", ("dev",)),
        *(Environment(tool.name, tool, root / ".tools" / tool.name) for tool in tools),
    ]


def uv(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    merged = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", **(env or {})}
    return subprocess.run(
        [str(UV), *map(str, args)], capture_output=True, text=True, check=False, env=merged, timeout=600
    )


def uv_pin() -> str:
    match = re.search(r"^uv==(\S+)", UV_PIN.read_text(), re.MULTILINE)
    if match is None:
        raise LockError(f"{UV_PIN.relative_to(ROOT)} pins no uv version")
    return match.group(1)


def stale_lock(environment: Environment) -> str | None:
    """Why the environment's uv.lock is stale against its pyproject.toml, or None."""
    done = uv("lock", "--check", "--project", environment.project)
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


def drifted_environment(environment: Environment) -> str | None:
    """Why the installed environment differs from its lock (None also when it is not installed here)."""
    if not (environment.venv / "pyvenv.cfg").is_file():
        return None
    extras = [arg for extra in environment.extras for arg in ("--extra", extra)]
    done = uv(
        "sync", "--locked", "--check", "--project", environment.project, *extras,
        env={"UV_PROJECT_ENVIRONMENT": str(environment.venv)},
    )  # fmt: skip
    return None if done.returncode == 0 else (done.stderr or done.stdout).strip()


def _layers_module():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import layers
    finally:
        sys.path.pop(0)
    return layers


def check(root: Path = ROOT) -> list[str]:
    """Every problem found; empty when every lock is current and every environment here matches its own."""
    problems = []
    wanted = UV_PIN.with_suffix(".in").read_text().split("==")[-1].strip()
    if wanted != uv_pin():
        problems.append(f"locks/uv.txt pins uv {uv_pin()} but locks/uv.in asks for {wanted}: run `make lock`")
    version = uv("--version").stdout.split()
    if version[1:2] != [uv_pin()]:
        problems.append(f".tools/uv is {' '.join(version)} but locks/uv.txt pins {uv_pin()}: run make")
    for environment in environments(root):
        lock = (environment.project / "uv.lock").relative_to(root)
        if (why := stale_lock(environment)) is not None:
            problems.append(f"{lock} is stale against its pyproject.toml (run `make lock`): {why}")
        elif (why := drifted_environment(environment)) is not None:
            venv = environment.venv.relative_to(root)
            problems.append(f"{venv} is not what {lock} says (remove it and run make again): {why}")
    if root == ROOT:
        layers = _layers_module()
        try:
            layers.lock(check=True)
        except layers.LayerError as error:
            problems.append(str(error))
    return problems


def lock(*, upgrade: bool = False) -> None:
    for environment in environments():
        done = uv("lock", "--project", environment.project, *(["--upgrade"] if upgrade else []))
        if done.returncode:
            raise LockError(f"uv lock of {environment.project}: {done.stderr.strip()}")
        print(
            f"{(environment.project / 'uv.lock').relative_to(ROOT)}: {done.stderr.strip().splitlines()[-1]}"
        )
    # The layers' constraints are resolved by the development environment's pip at uv.lock's versions.
    done = uv("sync", "--locked", "--extra", "dev", "--project", ROOT, "--quiet")
    if done.returncode:
        raise LockError(f"uv sync of .venv: {done.stderr.strip()}")
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "scripts" / "layers.py"), "lock"], check=True
    )
    # uv itself: locks/uv.in names the version (change it by hand to move uv), locks/uv.txt adds every hash.
    done = uv(
        "pip", "compile", "--quiet", "--generate-hashes", "--universal", "--python-version", "3.11",
        "--no-header", UV_PIN.with_suffix(".in"), "-o", UV_PIN,
    )  # fmt: skip
    if done.returncode:
        raise LockError(f"uv pip compile of locks/uv.in: {done.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    lock_parser = commands.add_parser("lock")
    lock_parser.add_argument(
        "--upgrade", action="store_true", help="take the newest versions the inputs allow"
    )
    commands.add_parser("check")
    args = parser.parse_args(argv)
    try:
        if args.command == "lock":
            lock(upgrade=args.upgrade)
            return 0
        problems = check()
    except LockError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if problems:
        print("\n".join(["lock check FAILED:", *(f"  {problem}" for problem in problems)]), file=sys.stderr)
        return 1
    print(
        f"locks current; every environment here matches its lock ({len(environments())} locks + the layers')"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
