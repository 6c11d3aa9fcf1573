"""The group-commit benchmark runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import math

import pytest

from tests.benchmark_runs import run_benchmark

FIGURES = {
    "group.concurrent.floor",
    "group.concurrent.batched",
    "group.sequential.floor",
}


@pytest.mark.slow
def test_group_benchmark_quick_json_reports_every_figure_and_its_baselines() -> None:
    """`benchmarks/group.py --quick --json` exits 0; phalanx and both floors were measured."""
    report = run_benchmark("group.py", timeout=120)
    assert set(report["figures"]) == FIGURES
    for key, figure in report["figures"].items():
        assert len(figure["samples"]["raw"]) == report["repeats"], key
        for name in ("phalanx", "raw", "ratio"):
            value = figure[name]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, name)
    assert isinstance(report["figures"]["group.concurrent.floor"]["pass"], bool)
    # Concurrent runs shared commits: more than one step per commit.
    assert report["steps_per_commit"] > 1
