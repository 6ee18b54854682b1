"""P1 cold start: every function's `import app; app.handler` in a fresh interpreter against a bare
`import boto3`, interleaved in one run, median of 7.

Each sample is a new interpreter started the way Lambda starts one (the function's folder first on
sys.path and as the working directory, the function's template environment, `_HANDLER`'s module imported
by name); the child times only the import, so the interpreter's own start-up is in neither side. It reports
its CPU time (user + system) and its wall time: on a machine shared with other work the wall time also
counts waiting for a CPU, so the verdict is the CPU-time ratio, and the wall ratio is printed beside it.
The rounds are interleaved (boto3, then every function, repeated), so a load change hits all alike.

Goal: <= 1.5x for the API functions (HTTP routes, the authorizer, the WebSocket routes), <= 2.5x for the
event functions (teardown, sweeper, the stream consumers). The layers' bytecode matters as much as what is
imported: Lambda's /opt is read-only, so a layer without python3.13 .pyc files compiles every module it
imports on every cold start (P5 checks that the layers ship bytecode; this measures with bytecode).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.common import Verdict, print_table, say

ROOT = Path(__file__).resolve().parents[1]
SECTION = "P1 cold start"
ROUNDS = 7
API_GOAL, EVENT_GOAL = 1.5, 2.5

_CHILD = """
import json, sys, time
sys.path.insert(0, {folder!r})
wall, cpu = time.perf_counter(), time.process_time()
{statement}
print(json.dumps([time.perf_counter() - wall, time.process_time() - cpu]))
"""


@dataclass(frozen=True)
class Target:
    name: str
    folder: Path
    statement: str
    goal: float | None
    kind: str


def targets() -> list[Target]:
    from devstack.template import Template

    template = Template.load(ROOT / "template.yaml")
    found = []
    for logical_id, function in template.functions.items():
        module, _, attribute = function.handler.rpartition(".")
        event_driven = bool(function.sqs or function.streams or function.schedules)
        found.append(
            Target(
                logical_id,
                function.code_uri,
                f"import {module}; {module}.{attribute}",
                EVENT_GOAL if event_driven else API_GOAL,
                "event" if event_driven else "api",
            )
        )
    return found


def _environment(name: str) -> dict[str, str]:
    """Globals' variables at their parameter defaults and what Lambda sets; the table names and the like
    are not read at import."""
    from devstack.template import Template

    template = Template.load(ROOT / "template.yaml")
    defaults = template.parameter_defaults()
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "TMPDIR")}
    for variable, value in template.function(name).variables.items():
        if isinstance(value, str):
            env[variable] = value
        elif isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in defaults:
            env[variable] = str(defaults[value["Ref"]])
        else:
            env[variable] = "bench-placeholder"
    env.update(
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_LAMBDA_FUNCTION_NAME=name,
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
        AWS_EXECUTION_ENV="AWS_Lambda_python3.13",
        _HANDLER="app.handler",
    )
    return env


def _sample(folder: Path, statement: str, env: dict[str, str]) -> tuple[float, float]:
    code = _CHILD.format(folder=str(folder), statement=statement)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(f"{statement} failed in {folder}:\n{done.stderr[-2000:]}")
    wall, cpu = json.loads(done.stdout.strip().splitlines()[-1])
    return wall * 1000, cpu * 1000


def run(rounds: int = ROUNDS) -> list[Verdict]:
    functions = targets()
    baseline = Target("import boto3", ROOT, "import boto3", None, "baseline")
    envs = {t.name: _environment(t.name) for t in functions}
    envs[baseline.name] = _environment(functions[0].name)
    samples: dict[str, list[tuple[float, float]]] = {t.name: [] for t in [baseline, *functions]}
    for _ in range(rounds):
        for target in [baseline, *functions]:
            samples[target.name].append(_sample(target.folder, target.statement, envs[target.name]))

    def medians(name: str) -> tuple[float, float]:
        return (
            statistics.median(w for w, _ in samples[name]),
            statistics.median(c for _, c in samples[name]),
        )

    base_wall, base_cpu = medians(baseline.name)
    say(f"\n{SECTION}: `import app; app.handler` in a fresh interpreter, median of {rounds}, interleaved")
    say(f"  bare `import boto3`: {base_cpu:.0f} ms CPU, {base_wall:.0f} ms wall")
    rows, verdicts = [], []
    for target in functions:
        wall, cpu = medians(target.name)
        ratio = cpu / base_cpu
        ok = ratio <= (target.goal or 0)
        rows.append(
            [
                target.name,
                target.kind,
                f"{cpu:.0f}",
                f"{ratio:.2f}x",
                f"{wall:.0f}",
                f"{wall / base_wall:.2f}x",
                f"<= {target.goal}x",
                "PASS" if ok else "FAIL",
            ]
        )
        verdicts.append(Verdict(SECTION, target.name, f"{ratio:.2f}x boto3 (CPU)", f"<= {target.goal}x", ok))
    print_table(["function", "kind", "cpu ms", "cpu ratio", "wall ms", "wall ratio", "goal", ""], rows)
    worst = {
        kind: max(
            (v for t, v in zip(functions, verdicts, strict=True) if t.kind == kind),
            key=lambda v: float(v.measured.split("x")[0]),
        )
        for kind in ("api", "event")
    }
    return [
        Verdict(
            SECTION,
            f"worst {kind} function ({v.name})",
            v.measured,
            v.goal,
            all(x.ok for t, x in zip(functions, verdicts, strict=True) if t.kind == kind),
        )
        for kind, v in worst.items()
    ]
