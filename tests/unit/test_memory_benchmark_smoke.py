"""`benchmarks/memory.py --quick` runs end to end; its figures are never asserted on."""

from __future__ import annotations

import math

from tests.benchmark_runs import run_benchmark

FIGURES = {
    "cas.uncontended",
    "cas.request_stream",
    "update.writers_1",
    "update.writers_4",
    "update.writers_16",
    "snapshot.read_500",
    "snapshot.read_1000",
    "snapshot.read_2000",
    "recall.fts_p95",
}


def test_memory_benchmark_quick_json_reports_every_figure_and_its_baseline() -> None:
    """--quick --json exits 0; every figure has a positive phalanx and baseline value."""
    report = run_benchmark("memory.py", timeout=300)
    assert report["quick"] is True
    assert set(report["figures"]) == FIGURES
    for key, figure in report["figures"].items():
        for name in ("phalanx", "raw", "ratio"):
            value = figure[name]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, name)
    assert [row["writers"] for row in report["contention"]] == [1, 4, 16]
    assert all(0 <= row["conflict_rate"] < 1 for row in report["contention"])
    assert isinstance(report["fts"]["pass"], bool)
    assert isinstance(report["all_targets_met"], bool)
