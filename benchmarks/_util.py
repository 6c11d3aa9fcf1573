"""Timing and reporting helpers shared by the benchmark scripts.

The machine the benchmarks run on is shared and noisy, so every figure is a
comparison made in the same run: phalanx and its raw baseline are measured in
alternating rounds, each round yields one paired ratio, and the figure is the median.
A burst of noise long enough to slow one side of a round usually slows the other too,
so the paired ratio is steadier than the ratio of two independently taken medians.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

#: A measurement: runs once, returns the figure it measured (a time, a rate...).
Measure = Callable[[], Awaitable[float]]


def median_of(fn: Callable[[], float], repeats: int) -> float:
    """The median of `repeats` calls of `fn`, each returning one measured value."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    samples = []
    for _ in range(repeats):
        gc.collect()  # garbage left by the previous run must not be collected in this one
        samples.append(fn())
    return statistics.median(samples)


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """Time a block with `time.perf_counter`; the yielded function reads the seconds.

    Example::

        with stopwatch() as elapsed:
            work()
        print(elapsed())
    """
    start = time.perf_counter()
    end: float | None = None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


async def interleaved(
    measures: Mapping[str, Measure], repeats: int, *, warmup: int = 1
) -> dict[str, list[float]]:
    """Run each measurement `warmup` + `repeats` times in alternating order.

    Rounds go A B, then B A, then A B...: reversing the order every round cancels a
    steady drift (a warming cache, a filling disk) that a fixed A B A B order would
    charge to whichever side always runs second. Warm-up rounds are discarded.

    Returns:
        The `repeats` kept samples of each measurement, in round order.
    """
    names = list(measures)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(warmup + repeats):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            gc.collect()
            value = await measures[name]()
            if round_ >= warmup:
                samples[name].append(value)
    return samples


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """The median of the round-by-round ratios of two interleaved sample lists."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError("paired samples need two non-empty lists of the same length")
    return statistics.median(n / d for n, d in zip(numerator, denominator, strict=True))


@dataclass(frozen=True)
class Figure:
    """One benchmark figure: phalanx against its raw baseline, with an optional target.

    `ratio` is always phalanx / raw in `unit`. `better` says which way is good, and
    `limit` is the ratio the target allows: at most `limit` when lower is better, at
    least `limit` when higher is better. A figure without a limit is only reported.
    """

    key: str
    label: str
    unit: str
    phalanx: float
    raw: float
    ratio: float
    better: Literal["lower", "higher"]
    limit: float | None = None
    samples: Mapping[str, Sequence[float]] = field(default_factory=dict)

    @classmethod
    def from_samples(
        cls,
        key: str,
        label: str,
        unit: str,
        samples: Mapping[str, Sequence[float]],
        *,
        better: Literal["lower", "higher"],
        limit: float | None = None,
    ) -> Figure:
        """Build a figure from interleaved `phalanx` and `raw` samples."""
        mine, raw = samples["phalanx"], samples["raw"]
        return cls(
            key=key,
            label=label,
            unit=unit,
            phalanx=statistics.median(mine),
            raw=statistics.median(raw),
            ratio=paired_ratio(mine, raw),
            better=better,
            limit=limit,
            samples={name: list(values) for name, values in samples.items()},
        )

    @property
    def target(self) -> str:
        """The target as text, e.g. `<= 1.50x raw`, or `-` when there is none."""
        if self.limit is None:
            return "-"
        return f"{'<=' if self.better == 'lower' else '>='} {self.limit:.2f}x raw"

    @property
    def passed(self) -> bool | None:
        """Whether the target is met; None when the figure has no target."""
        if self.limit is None:
            return None
        return self.ratio <= self.limit if self.better == "lower" else self.ratio >= self.limit

    @property
    def verdict(self) -> str:
        """PASS, MISS, or `-` for a figure that is only reported."""
        return {True: "PASS", False: "MISS", None: "-"}[self.passed]

    def to_json(self) -> dict[str, Any]:
        """The figure as a JSON-ready dict (the `--json` schema)."""
        return {
            "label": self.label,
            "unit": self.unit,
            "phalanx": self.phalanx,
            "raw": self.raw,
            "ratio": self.ratio,
            "better": self.better,
            "target": None if self.limit is None else self.target,
            "pass": self.passed,
            "samples": {name: list(values) for name, values in self.samples.items()},
        }


def format_number(value: float) -> str:
    """A number with about three significant digits and thousands separators."""
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, file: TextIO | None = None
) -> None:
    """Print rows under headers in aligned columns: text left, numbers right."""
    out = file or sys.stdout
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def numeric(cell: str) -> bool:
        return cell[:1].isdigit() or (cell[:1] in "+-." and cell[1:2].isdigit())

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if numeric(cell) else cell.ljust(width)
            for cell, width in zip(cells, widths, strict=True)
        ]
        return "  ".join(parts).rstrip()

    print(line(headers), file=out)
    print("  ".join("-" * width for width in widths), file=out)
    for row in rows:
        print(line(row), file=out)


def print_figures(figures: Sequence[Figure], *, file: TextIO | None = None) -> None:
    """Print figures as a table: medians, the paired ratio, the target and the verdict."""
    rows = [
        [
            figure.label,
            figure.unit,
            format_number(figure.phalanx),
            format_number(figure.raw),
            f"{figure.ratio:.2f}x",
            figure.target,
            figure.verdict,
        ]
        for figure in figures
    ]
    headers = ["figure", "unit", "phalanx", "raw", "ratio", "target", "result"]
    print_table(headers, rows, file=file)
