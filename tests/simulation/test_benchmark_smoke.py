"""`benchmarks/sim.py --quick` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import math

from tests.benchmark_runs import run_benchmark


def test_sim_benchmark_quick_json_reports_its_rate_and_its_real_time_baseline() -> None:
    """The quick run simulates its seeds and runs the real-time baseline, every figure positive."""
    report = run_benchmark("sim.py", timeout=600)
    assert report["seeds_run"] == 20 and report["failures"] == []
    assert report["faults_injected"]["crash"] > 0
    for name in ("seeds_per_s", "real_run_s", "simulated_run_s", "virtual_run_s", "speedup"):
        assert isinstance(report[name], float) and math.isfinite(report[name]) and report[name] > 0
    assert isinstance(report["pass"], bool)
