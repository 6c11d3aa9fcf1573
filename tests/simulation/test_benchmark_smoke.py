"""`benchmarks/sim.py --quick` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sim_benchmark_quick_json_reports_its_rate_and_its_real_time_baseline() -> None:
    """The quick run simulates its seeds and runs the real-time baseline, every figure positive."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/sim.py", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["seeds_run"] == 20 and report["failures"] == []
    assert report["faults_injected"]["crash"] > 0
    for name in ("seeds_per_s", "real_run_s", "simulated_run_s", "virtual_run_s", "speedup"):
        assert isinstance(report[name], float) and math.isfinite(report[name]) and report[name] > 0
    assert isinstance(report["pass"], bool)
