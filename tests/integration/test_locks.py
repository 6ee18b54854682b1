"""Every environment comes from its committed lock, and the check (scripts/locks.py, in make lint) catches
each way that could stop being true: an input changed without `make lock`, a version bumped by hand in a
lock, a package installed into an environment from outside its lock, layers' constraints edited by hand.

The faults are made on copies (a lock project copied to a temporary folder, a scratch environment synced
from it with the real uv), never on the checkout's own files.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


locks = _load("locks")


@pytest.fixture
def mcp2_copy(tmp_path: Path) -> ModuleType:
    """locks/tools/mcp2 copied, and an environment synced from the copy with the real uv."""
    project = tmp_path / "project"
    shutil.copytree(ROOT / "locks" / "tools" / "mcp2", project)
    environment = locks.Environment("mcp2-copy", project, tmp_path / "venv")
    done = locks.uv(
        "sync", "--locked", "--project", project, "--python", sys.executable, "--quiet",
        env={"UV_PROJECT_ENVIRONMENT": str(environment.venv)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert locks.stale_lock(environment) is None
    assert locks.drifted_environment(environment) is None
    return environment


def test_every_lock_is_current_and_every_environment_here_matches_it() -> None:
    """What `make lint` runs first; by the time the tests run, make has installed every environment."""
    assert locks.check() == []
    for environment in locks.environments():
        assert (environment.venv / "pyvenv.cfg").is_file(), f"{environment.venv} was not made by make"


def test_a_dependency_added_without_make_lock_is_a_stale_lock(mcp2_copy) -> None:
    pyproject = mcp2_copy.project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('dependencies = ["mcp==2.3.0"]', 'dependencies = ["mcp==2.3.0", "six"]')
    )
    why = locks.stale_lock(mcp2_copy)
    assert why is not None and "needs to be updated" in why, why


def test_a_version_bumped_by_hand_in_a_lock_fails_the_check_and_cannot_install(mcp2_copy, tmp_path) -> None:
    lock = mcp2_copy.project / "uv.lock"
    text = lock.read_text()
    entry = re.search(r'name = "anyio"\nversion = "(\d+)\.(\d+)\.(\d+)"', text)
    assert entry is not None
    major, minor, patch = entry.groups()
    bumped = f'name = "anyio"\nversion = "{major}.{minor}.{int(patch) + 1}"'
    lock.write_text(text.replace(entry.group(0), bumped))
    # The environment no longer matches the lock...
    assert locks.drifted_environment(mcp2_copy) is not None
    # ...and nothing can be installed from it: the lock's hashes belong to the version it really resolved.
    fresh = tmp_path / "fresh"
    done = locks.uv(
        "sync", "--frozen", "--project", mcp2_copy.project, "--python", sys.executable, "--quiet",
        env={"UV_PROJECT_ENVIRONMENT": str(fresh)},
    )  # fmt: skip
    assert done.returncode != 0, "a hand-edited lock installed"


def test_a_package_installed_from_outside_the_lock_is_caught(mcp2_copy) -> None:
    done = locks.uv("pip", "install", "--quiet", "--python", mcp2_copy.venv / "bin" / "python", "six")
    assert done.returncode == 0, done.stderr
    why = locks.drifted_environment(mcp2_copy)
    assert why is not None and "six" in why, why


def test_layers_constraints_edited_by_hand_are_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layers = locks._layers_module()
    copy = tmp_path / "constraints.txt"
    text = layers.LOCK.read_text()
    copy.write_text(
        re.sub(
            r"^(redis==\d+\.\d+\.)(\d+)$", lambda m: m.group(1) + str(int(m.group(2)) + 1), text, flags=re.M
        )
    )
    assert copy.read_text() != text
    monkeypatch.setattr(layers, "LOCK", copy)
    with pytest.raises(layers.LayerError, match="stale"):
        layers.lock(check=True)
