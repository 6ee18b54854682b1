"""Where a cold start's import time goes: `python -X importtime` of each function's `import app; app.handler`,
summed by top-level package (self time), median of a few runs; optionally against an older tree.

    python bench/importtime.py                       # this tree, every function
    python bench/importtime.py --before /tmp/old     # and a checkout of an older commit, side by side
    python bench/importtime.py --markdown            # the table docs/architecture.md shows

Used for the "Where the time goes" table in docs/architecture.md (`git worktree add /tmp/old 0b479a6` gives
the "before"). Both trees run with this .venv's libraries, so only our code's imports differ. Absolute
times are from a busy 2-core machine with -X importtime's own overhead: compare rows, not machines.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STDLIB = set(sys.stdlib_module_names)
ENV = {
    "POWERTOOLS_SERVICE_NAME": "session-service",
    "POWERTOOLS_METRICS_NAMESPACE": "SessionService",
    "LOG_LEVEL": "INFO",
    "TRACE_SDK": "false",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def profile(tree: Path, function: str) -> tuple[float, Counter[str]]:
    """(total ms, self ms by top-level package) of one fresh interpreter."""
    folder = tree / "functions" / function
    code = (
        f"import sys; sys.path[0:0] = [{str(folder)!r}, {str(tree / 'layers' / 'core')!r}]; "
        "import app; app.handler"
    )
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}, **ENV}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code], cwd=folder, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"{function} in {tree}: {done.stderr[-1500:]}")
    by_package: Counter[str] = Counter()
    total = 0.0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        self_us, cumulative_us, name = (part.strip() for part in line[len("import time:") :].split("|"))
        module = name.strip()
        top = module.split(".")[0]
        if top.startswith("__editable__"):  # the dev install's finder: Lambda has none
            continue
        group = "stdlib" if top in STDLIB or top.startswith("_") else top
        by_package[group] += int(self_us) / 1000
        if module == "app":
            total = int(cumulative_us) / 1000
    return total, by_package


def measure(tree: Path, function: str, runs: int) -> tuple[float, dict[str, float]]:
    samples = [profile(tree, function) for _ in range(runs)]
    total = statistics.median(t for t, _ in samples)
    packages = {name for _, counts in samples for name in counts}
    return total, {name: statistics.median(c.get(name, 0.0) for _, c in samples) for name in packages}


def top(counts: dict[str, float], n: int) -> str:
    best = sorted(((ms, name) for name, ms in counts.items() if name != "stdlib"), reverse=True)[:n]
    return ", ".join(f"{name} {ms:.0f}" for ms, name in best)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, help="an older checkout to compare with")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=4)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("functions", nargs="*")
    args = parser.parse_args(argv)
    folders = (ROOT / "functions").iterdir()
    names = args.functions or sorted(p.name for p in folders if (p / "app.py").is_file())
    rows = []
    for name in names:
        after_total, after = measure(ROOT, name, args.runs)
        before_total, before = (None, {})
        if args.before is not None and (args.before / "functions" / name / "app.py").is_file():
            before_total, before = measure(args.before, name, args.runs)
        rows.append((name, before_total, before, after_total, after))
    for name, before_total, before, after_total, after in rows:
        was = f"{before_total:.0f} ms ({top(before, args.top)})" if before_total is not None else "-"
        now = f"{after_total:.0f} ms ({top(after, args.top)})"
        plain = f"{name:<18} before {was}\n{'':<18} after  {now}"
        print(f"| {name} | {was} | {now} |" if args.markdown else plain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
