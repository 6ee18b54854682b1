"""The Lambda layers agree: one lock, no runtime packages, every function's merged /opt/python consistent.

The check itself is scripts/layers.py (also run by `make build` on what it built). Here it reads the layers
`sam build` made, or builds them into a temporary folder (arm64 wheels from the lock, about 20 s with a warm
pip cache), and prints each layer's unzipped size.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "layers.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layers_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


layers = _load()


def test_every_function_gets_one_consistent_set_of_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "check"], capture_output=True, text=True, timeout=600, check=False
    )
    with capsys.disabled():  # the sizes belong in `make test`'s output
        print("\n" + done.stdout.rstrip())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "layer check passed" in done.stdout


def test_the_lock_holds_the_versions_the_tests_run_against() -> None:
    """`make lock` prefers .venv's versions; a drift means the layers would ship something untested."""
    tested = layers.tested_versions()
    locked = layers.read_pins(layers.LOCK)
    drift = {
        name: (version, tested[name])
        for name, version in locked.items()
        if tested.get(name, version) != version
    }
    assert not drift, f"layers/constraints.txt differs from .venv (lock, venv): {drift}; run `make lock`"


def test_no_layer_requirement_names_a_runtime_package() -> None:
    runtime = set(layers.read_pins(layers.RUNTIME))
    assert {"boto3", "botocore"} <= runtime
    for requirements in (ROOT / "layers").glob("*/requirements.txt"):
        names = {
            layers.canonical(line.split("[")[0].split("=")[0].strip())
            for line in requirements.read_text().splitlines()
            if line.strip() and not line.startswith(("#", "-"))
        }
        assert not names & runtime, f"{requirements} names {names & runtime}"
    assert not set(layers.read_pins(layers.LOCK)) & runtime


# --- the rules, on layers made up here ------------------------------------------------------------------


def _dist(folder: Path, name: str, version: str, *requires: str) -> None:
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


@pytest.fixture
def runtime(tmp_path: Path) -> list:
    folder = tmp_path / "runtime"
    _dist(folder, "botocore", "1.40.0", "python-dateutil<3.0.0,>=2.1")
    _dist(folder, "python-dateutil", "2.9.0.post0")
    return layers.distributions(folder, "runtime")


def test_a_layer_that_bundles_botocore_fails(tmp_path: Path, runtime: list) -> None:
    _dist(tmp_path / "deps", "botocore", "1.44.5")
    problems = layers.merge("F", [("DepsLayer", tmp_path / "deps")], runtime)
    assert any("DepsLayer bundles botocore" in problem for problem in problems), problems


def test_two_versions_of_one_distribution_fail(tmp_path: Path, runtime: list) -> None:
    _dist(tmp_path / "deps", "attrs", "25.1.0")
    _dist(tmp_path / "e2b", "attrs", "26.1.0")
    problems = layers.merge("F", [("DepsLayer", tmp_path / "deps"), ("E2bLayer", tmp_path / "e2b")], runtime)
    assert problems == ["F: attrs 25.1.0 (DepsLayer) and 26.1.0 (E2bLayer)"]


def test_a_requirement_the_merged_tree_breaks_fails(tmp_path: Path, runtime: list) -> None:
    """The e2b layer once shipped python-dateutil 4 over the runtime's 2.9 (botocore needs < 3)."""
    _dist(tmp_path / "e2b", "e2b", "2.63.0", "python-dateutil>=2.8.2", "missing-thing>=1")
    problems = layers.merge("F", [("E2bLayer", tmp_path / "e2b")], runtime)
    assert problems == ["F: e2b 2.63.0 requires missing-thing>=1, which is missing"]
    _dist(tmp_path / "e2b2", "python-dateutil", "4.0.0")
    problems = layers.merge("F", [("E2bLayer", tmp_path / "e2b2")], runtime)
    assert any("botocore 1.40.0 requires python-dateutil<3.0.0,>=2.1" in p for p in problems), problems


def test_requirements_for_other_platforms_and_extras_are_ignored(tmp_path: Path, runtime: list) -> None:
    _dist(
        tmp_path / "deps",
        "pydantic",
        "2.14.3",
        'typing-extensions>=4; python_version < "3.13"',
        'email-validator>=2; extra == "email"',
        'pywin32; sys_platform == "win32"',
    )
    assert layers.merge("F", [("DepsLayer", tmp_path / "deps")], runtime) == []
