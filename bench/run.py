"""`make bench`: the performance budgets of issue 9 and the rows other issues ask for, measured in one run.

    python bench/run.py                 # everything (about 3-4 minutes on 2 busy cores)
    python bench/run.py p3 rows         # some sections: p1 p2 p3 rows p4 p5

Sections (each prints its table; the summary at the end lists every budget with its goal and PASS/FAIL):
- p1   cold start: every function's `import app; app.handler` in fresh interpreters against a bare
       `import boto3`, interleaved, median of 7 (bench/cold_start.py)
- p2   counted I/O per route: AWS calls (botocore hooks), Redis commands, E2B requests (bench/io_counts.py)
- p3   what a handler adds to the same raw calls, in CPU time (wall beside it) (bench/overhead.py), with
- rows the other comparisons: MCP against REST, a heavy DELETE against an empty one, append against its
       raw calls, the cache epoch's cost on a cache hit (bench/overhead.py)
- p4   teardown throughput against the local E2B API with injected latency and 429s (bench/teardown.py)
- p5   layer sizes from a build, and which functions get the e2b layer (bench/sizes.py)

Absolute times depend on the machine, its load and on moto; the ratios and differences, taken from pairs
timed in one run, are the point. Exit status 1 when a budget fails.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `bench` as a package, from any cwd

from bench import common
from bench.common import Verdict, print_table, say
from bench.counting import install

SECTIONS = ("p1", "p2", "p3", "rows", "p4", "p5")


def main(argv: list[str]) -> int:
    chosen = [name.lower() for name in argv] or list(SECTIONS)
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        say(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
        return 2
    install()  # before any botocore session exists
    # What the template gives every function; logs and EMF metrics are printed, to /dev/null here.
    os.environ.setdefault("LOG_LEVEL", "INFO")
    warnings.filterwarnings("ignore", "No application metrics to publish")
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    started = time.monotonic()
    verdicts: list[Verdict] = []
    if "p1" in chosen:
        from bench import cold_start

        verdicts += cold_start.run()
    if "p5" in chosen:
        from bench import sizes

        verdicts += sizes.run()
    if {"p2", "p3", "rows", "p4"} & set(chosen):
        from bench.stack import BenchStack

        with BenchStack() as stack:
            if "p2" in chosen:
                from bench import io_counts

                verdicts += io_counts.run(stack)
            if {"p3", "rows"} & set(chosen):
                from bench import overhead

                rows = [
                    row
                    for row in overhead.ROWS
                    if ("p3" in chosen and row in overhead.P3_ROWS)
                    or ("rows" in chosen and row not in overhead.P3_ROWS)
                ]
                verdicts += overhead.run(stack, rows)
            if "p4" in chosen:
                from bench import teardown

                verdicts += teardown.run(stack)
    say(f"\nsummary ({time.monotonic() - started:.0f} s)")
    print_table(
        ["budget", "measured", "goal", ""],
        [[f"{v.section}: {v.name}", v.measured, v.goal, v.mark] for v in verdicts],
    )
    failed = [v for v in verdicts if v.ok is False]
    say(f"{len(failed)} budget(s) failed" if failed else "every budget holds")
    common.REPORT.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
