"""`benchmarks/evals.py --quick` runs both sides; its figures are never asserted on."""

from __future__ import annotations

from tests.benchmark_runs import run_benchmark


def test_evals_benchmark_quick_runs_both_sides() -> None:
    """The quick benchmark scores its copied demo runs and reads them, both timed."""
    report = run_benchmark("evals.py", timeout=300)
    assert report["runs"] == 50 and report["criteria"] >= 12
    figure = report["figures"]["evals.deterministic"]
    assert figure["phalanx_s"] > 0 and figure["raw_s"] > 0
    assert len(figure["samples"]["phalanx"]) == len(figure["samples"]["raw"]) == 3
