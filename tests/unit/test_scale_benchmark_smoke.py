"""`benchmarks/scale.py --quick` runs end to end; its figures are never asserted on."""

from __future__ import annotations

import pytest

from tests.benchmark_runs import run_benchmark
from tests.conftest import require_postgres


@pytest.mark.postgres
@pytest.mark.slow
def test_scale_benchmark_quick_json_measures_workers_baseline_and_takeover() -> None:
    """Every window (baseline, 1 and 2 workers, SQLite), the fan-out and the takeover ran."""
    require_postgres()
    report = run_benchmark("scale.py", timeout=300)
    labels = [w["label"] for w in report["windows"]]
    assert labels == [
        "in-process baseline",
        "postgres, 1 worker(s)",
        "postgres, 2 worker(s)",
        "sqlite, 1 worker",
    ]
    for window in report["windows"]:
        assert window["runs"] == report["runs"] and window["steps_per_s"] > 0
    assert len(report["takeover"]["seconds"]) == 1
    fan = report["fanout"]
    assert [w["label"] for w in fan["windows"]] == [
        "fan-out, in-process baseline",
        "fan-out, 1 worker(s)",
        "fan-out, 2 worker(s)",
    ]
    for window in fan["windows"]:
        assert window["children"] == fan["parents"] * fan["width"] and window["seconds"] > 0
