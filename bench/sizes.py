"""P5 deployable size: the layers as `make build` (sam build) made them, or, without a build, built here the
same way (scripts/layers.py: arm64 python3.13 wheels from the lock, with python3.13 bytecode).

Budgets: the dependency layer <= 25 MB unzipped; no layer bundles boto3/botocore (or anything else the
runtime ships); the dependency layers carry python3.13 bytecode (Lambda's /opt is read-only: without it,
every cold start compiles what it imports; see bench/cold_start.py). Which functions get the e2b layer is
checked against the functions that called E2B in P2 (bench/io_counts.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from bench.common import Verdict, print_table, say

ROOT = Path(__file__).resolve().parents[1]
SECTION = "P5 deployable size"
DEPS_GOAL_MB = 25.0
BYTECODE_GOAL = 0.95


def layers_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("layers_script", ROOT / "scripts" / "layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run() -> list[Verdict]:
    layers = layers_script()
    build_dir = ROOT / ".aws-sam" / "build"
    lock = layers.LOCK.stat().st_mtime
    usable = (build_dir / "template.yaml").is_file() and (build_dir / "template.yaml").stat().st_mtime > lock
    report = layers.check(build_dir if usable else None, bytecode=True)
    source = f"from `make build` ({build_dir})" if usable else "built here as `make build` builds them"
    template = layers.load_template()
    conditional = {
        layer_id
        for layer_id, resource in (template.get("Resources") or {}).items()
        if resource.get("Type") == "AWS::Serverless::LayerVersion" and resource.get("Condition")
    }
    say(f"\n{SECTION}: layers {source}, unzipped")
    rows = []
    for layer_id, size in report.sizes.items():
        users = sorted(f for f, ids in report.functions.items() if layer_id in ids)
        who = "every function" if len(users) == len(report.functions) else ", ".join(users)
        if layer_id in conditional:
            who += f" (only when {template['Resources'][layer_id]['Condition']})"
        rows.append([layer_id, f"{size / 1e6:.1f} MB", f"{report.bytecode.get(layer_id, 0):.0%}", who])
    print_table(["layer", "size", "3.13 .pyc", "attached to"], rows)
    for problem in report.problems:
        say(f"  problem: {problem}")

    deps_mb = report.sizes.get("DepsLayer", 0) / 1e6
    bundled = [p for p in report.problems if "bundles" in p]
    sources = layers.layer_sources(template)
    dependency_layers = [i for i in report.sizes if (sources[i] / "requirements.txt").is_file()]
    bytecode = {i: report.bytecode.get(i, 0.0) for i in dependency_layers}
    return [
        Verdict(
            SECTION,
            "DepsLayer size",
            f"{deps_mb:.1f} MB",
            f"<= {DEPS_GOAL_MB:.0f} MB",
            deps_mb <= DEPS_GOAL_MB,
        ),
        Verdict(
            SECTION,
            "no boto3/botocore (or other runtime package) in a layer",
            f"{len(bundled)} found",
            "0",
            not bundled,
        ),
        Verdict(
            SECTION,
            "layers' merged /opt/python consistent (one version each, requirements met)",
            f"{len(report.problems) - len(bundled)} problems",
            "0",
            len(report.problems) == len(bundled),
        ),
        Verdict(
            SECTION,
            "dependency layers ship python3.13 bytecode",
            ", ".join(f"{i} {share:.0%}" for i, share in bytecode.items()),
            f">= {BYTECODE_GOAL:.0%}",
            all(share >= BYTECODE_GOAL for share in bytecode.values()),
        ),
    ]


def e2b_attachment(called_e2b: set[str]) -> Verdict:
    """The e2b layer is on exactly the functions that called E2B (as P2 observed them)."""
    layers = layers_script()
    attached = {f for f, ids in layers.function_layers(layers.load_template()).items() if "E2bLayer" in ids}
    missing, extra = sorted(called_e2b - attached), sorted(attached - called_e2b)
    detail = f"on {len(attached)}: {', '.join(sorted(attached))}"
    if missing:
        detail += f"; called E2B without it: {', '.join(missing)}"
    if extra:
        detail += f"; has it but never called E2B: {', '.join(extra)}"
    return Verdict(
        SECTION, "e2b layer only where E2B is called (P2)", detail, "exactly those", not missing and not extra
    )
