"""The benchmark scripts run end to end; their figures are never asserted on (too noisy)."""

from __future__ import annotations

import math

from tests.benchmark_runs import run_benchmark
from tests.conftest import IN_CI

SQLITE_FIGURES = {
    "sqlite.append_latency.normal",
    "sqlite.append_latency.full",
    "sqlite.batch_throughput",
    "sqlite.read_stream",
}
POSTGRES_FIGURES = {
    "postgres.append_latency",
    "postgres.batch_throughput",
    "postgres.read_stream",
    "postgres.concurrent_writers",
}


def test_journal_benchmark_quick_json_reports_every_figure() -> None:
    """`benchmarks/journal.py --quick --json` exits 0 with every figure a positive number."""
    report = run_benchmark("journal.py", timeout=60)

    postgres = report["postgres"]
    assert postgres["status"] in ("ok", "skipped", "incomplete")
    if postgres["status"] == "ok":
        expected = SQLITE_FIGURES | POSTGRES_FIGURES
    else:
        assert postgres["reason"], "a skipped PostgreSQL section must say why"
        assert not IN_CI, f"CI=true: the PostgreSQL section must run: {postgres['reason']}"
        expected = SQLITE_FIGURES
    figures = report["figures"]
    assert expected <= figures.keys()
    for key, figure in figures.items():
        for name in ("phalanx", "raw", "ratio"):
            value = figure[name]
            assert isinstance(value, float), (key, name, value)
            assert math.isfinite(value) and value > 0, (key, name, value)
        if key in SQLITE_FIGURES:
            assert isinstance(figure["pass"], bool), key
    assert isinstance(report["all_targets_met"], bool)
