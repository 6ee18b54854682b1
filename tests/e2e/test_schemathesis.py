"""Generated-case tests: schemathesis against the running dev stack, from the document it serves
(GET /openapi.json), with both demo projects' keys.

Every check runs (no server errors, status codes, content types, headers and bodies as documented,
negative data refused, positive data accepted, auth not ignored, use after free, resources available after
creation); schemathesis.toml beside this file lists what is switched off or widened, and why. Four runs go
side by side, so the wall time is the longest of them:

- demo-a, the coverage phase: the schema's boundary and type-violation cases for every operation (about 850,
  deterministic; the same whoever calls, so it runs for one key), in two runs (the sessions tag, the rest);
- demo-a and demo-b each, the examples, fuzzing (`MAX_EXAMPLES` per operation) and stateful phases (the
  document's links: create -> get / patch / tokens / messages / tools -> delete -> get 404).

The seed is fixed (ST_SEED overrides it) so that a run is repeatable; the test prints the case counts.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from plugins.services import local_only

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent / "schemathesis"
ST = ROOT / ".tools" / "schemathesis" / "bin" / "st"
MAX_EXAMPLES = 5
SEED = int(os.environ.get("ST_SEED", "20261123"))
RUN_TIMEOUT_S = 240


def start(
    stack: dict[str, Any], key: str, phases: str, tags: str | None, out: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    report = out.with_suffix(".json")
    command = [
        str(ST),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{stack['api_url']}/openapi.json",
        "--url",
        stack["api_url"],
        "--phases",
        phases,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *(["--include-tag-regex", tags] if tags else []),
    ]
    env = {**os.environ, "ST_API_KEY": key, "PYTHONPATH": str(HERE)}
    with out.open("wb") as log:
        process = subprocess.Popen(command, cwd=out.parent, env=env, stdout=log, stderr=subprocess.STDOUT)
    return process, report


@pytest.mark.timeout(RUN_TIMEOUT_S + 30)
def test_the_api_conforms_to_its_document(
    devstack: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local_only(devstack, "generated cases create sessions, run commands and rely on demo-b's key")
    assert ST.exists(), f"{ST} is missing: `make test` (or `make e2e`) installs it"
    projects = devstack["projects"]
    assert len(projects) == 2
    a, b = projects[0]["api_key"], projects[1]["api_key"]
    runs = {  # name: (key, phases, operations by tag)
        "demo-a coverage, sessions": (a, "coverage", "^sessions$"),
        "demo-a coverage, the rest": (a, "coverage", "^(?!sessions$)"),
        "demo-a examples,fuzzing,stateful": (a, "examples,fuzzing,stateful", None),
        "demo-b examples,fuzzing,stateful": (b, "examples,fuzzing,stateful", None),
    }
    started = {
        name: start(devstack, key, phases, tags, tmp_path / f"run{index}.log")
        for index, (name, (key, phases, tags)) in enumerate(runs.items())
    }
    reports: dict[str, dict[str, Any]] = {}
    problems = []
    for index, (name, (process, report)) in enumerate(started.items()):
        try:
            code = process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other, _ in started.values():
                other.kill()
            pytest.fail(f"schemathesis ({name}) did not finish within {RUN_TIMEOUT_S} s")
        output = (tmp_path / f"run{index}.log").read_text(errors="replace")
        if code != 0 or not report.exists():
            problems.append(f"--- {name}: exit {code}\n{output[-12000:]}")
            continue
        reports[name] = json.loads(report.read_text())
    assert not problems, "\n".join(problems)

    lines = [f"schemathesis {SEED=} max_examples={MAX_EXAMPLES}"]
    total, covered, every = 0, 0, 0
    for name, report in reports.items():
        phases = {phase: state["status"] for phase, state in report["phases"].items()}
        ran = {phase for phase in runs[name][1].split(",")}
        assert {phase for phase, status in phases.items() if status == "success"} == ran, (name, phases)
        operations = report["operations"]
        assert operations["tested"] == operations["selected"] > 0, (name, operations)
        if runs[name][2] is None:
            assert operations["selected"] == operations["total"], (name, operations)
            every = operations["total"]
        else:
            covered += operations["selected"]
        assert report["failures"] == [] and report["errors"] == [] and report["filtered"] == 0, name
        cases = report["test_cases"]
        total += cases["generated"]
        lines.append(
            f"  {name}: {cases['generated']} cases, {report['operations']['tested']} operations, "
            f"{report['running_time']:.0f} s"
        )
    # Together the coverage runs select every operation (and GET /openapi.json, which a run without a filter
    # leaves out as the document's own URL).
    assert covered >= every > 0, (covered, every)
    lines.append(f"  {total} cases in all, no failures")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
