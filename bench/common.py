"""What every bench section shares: budgets with a goal and a verdict, paired timing, and the report.

A bench measures A against B *in one run, interleaved* (A, B, B, A, ...): the machine's load changes over
seconds, and an interleaved pair sees the same load, so their ratio (or difference) is meaningful where
their absolute times are not. Nothing here asserts: a section returns `Verdict`s and `bench/run.py`
prints them with their goals and a PASS/FAIL mark.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

# The report goes to the real stdout; handlers print their logs and EMF metrics to sys.stdout, which the
# bench points at /dev/null (bench/run.py) so that they cost what they cost without drowning the figures.
REPORT: TextIO = sys.stdout


def say(text: str = "") -> None:
    REPORT.write(text + "\n")
    REPORT.flush()


@dataclass(frozen=True)
class Verdict:
    """One budget: what was measured, the goal, and whether it held (None: informational, no goal)."""

    section: str
    name: str
    measured: str
    goal: str
    ok: bool | None

    @property
    def mark(self) -> str:
        return "info" if self.ok is None else ("PASS" if self.ok else "FAIL")


@dataclass
class Samples:
    """Wall times of one side of a pair, in milliseconds."""

    ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # this thread's CPU time: the work, not the waiting

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.ms)

    @property
    def cpu_p50(self) -> float:
        return statistics.median(self.cpu_ms)

    def quantile(self, q: float) -> float:
        ordered = sorted(self.ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass(frozen=True)
class Case:
    """One side of a comparison: `call` is timed; `setup` (untimed) runs before each call and its result is
    passed to `call` (a fresh victim to delete, a cache key to drop...)."""

    label: str
    call: Callable[[Any], Any]
    setup: Callable[[], Any] = lambda: None


def paired_difference(a: Samples, b: Samples) -> float:
    """The median of a_i - b_i over the pairs (each pair timed back to back, so it shares the load of that
    moment): an estimate of what A adds to B that a load change during the run does not shift."""
    return statistics.median(x - y for x, y in zip(a.ms, b.ms, strict=True))


def paired(a: Case, b: Case, rounds: int, warmup: int = 10) -> tuple[Samples, Samples]:
    """Time A and B alternately (ABBA order, so neither always runs first) after `warmup` rounds each."""
    for _ in range(warmup):
        a.call(a.setup())
        b.call(b.setup())
    first, second = Samples(), Samples()
    for index in range(rounds):
        order = ((a, first), (b, second)) if index % 2 == 0 else ((b, second), (a, first))
        for case, samples in order:
            argument = case.setup()
            cpu, started = time.thread_time(), time.perf_counter()
            case.call(argument)
            samples.ms.append((time.perf_counter() - started) * 1000)
            samples.cpu_ms.append((time.thread_time() - cpu) * 1000)
    return first, second


def ratio_verdict(section: str, name: str, ratio: float, goal: float | None, detail: str = "") -> Verdict:
    measured = f"{ratio:.2f}x" + (f" ({detail})" if detail else "")
    return Verdict(
        section, name, measured, f"<= {goal}x" if goal else "-", None if goal is None else ratio <= goal
    )


def print_table(headers: list[str], rows: list[list[str]], indent: str = "  ") -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    line = indent + "  ".join(f"{{:<{widths[0]}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    line = indent + "  ".join(
        (f"{{:<{width}}}" if i == 0 else f"{{:>{width}}}") for i, width in enumerate(widths)
    )
    say(line.format(*headers))
    for row in rows:
        say(line.format(*row))
