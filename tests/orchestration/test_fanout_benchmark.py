"""The fan-out benchmark runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import math

import pytest

from tests.benchmark_runs import run_benchmark

FIGURES = {
    "fanout.step.floor",
    "fanout.step.gather",
    "fanout.run.floor",
    "fanout.run.gather",
}


@pytest.mark.slow
def test_fanout_benchmark_quick_json_reports_every_figure() -> None:
    """`benchmarks/fanout.py --quick --json` exits 0 with every figure a positive number."""
    report = run_benchmark("fanout.py", timeout=120)
    assert set(report["figures"]) == FIGURES
    for key, figure in report["figures"].items():
        for name in ("phalanx", "raw", "ratio"):
            value = figure[name]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, name)
    assert isinstance(report["figures"]["fanout.step.floor"]["pass"], bool)
    # Step branches journal one event per branch plus the run's and fan-out's own four.
    assert report["events"]["step"] == report["branches"] + 4
    assert isinstance(report["all_targets_met"], bool)
