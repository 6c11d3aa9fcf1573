"""`benchmarks/backpressure.py` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import math

import pytest

from tests.benchmark_runs import run_benchmark


@pytest.mark.slow
def test_backpressure_benchmark_quick_json_reports_every_figure() -> None:
    """`backpressure.py --quick --json` exits 0; each figure and its baseline is positive."""
    report = run_benchmark("backpressure.py", timeout=180)
    assert report["benchmark"] == "backpressure" and isinstance(report["target_met"], bool)
    figures = report["figures"]
    for name in ("request_us", "budgeted_request_us", "vote_us", "three_calls_us", "vote_ratio"):
        value = figures[name]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, name
    assert math.isfinite(figures["accounting_overhead_us"])
