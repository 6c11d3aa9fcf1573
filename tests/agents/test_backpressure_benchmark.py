"""`benchmarks/backpressure.py` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_backpressure_benchmark_quick_json_reports_every_figure() -> None:
    """`backpressure.py --quick --json` exits 0; each figure and its baseline is positive."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/backpressure.py", "--quick", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["benchmark"] == "backpressure" and isinstance(report["target_met"], bool)
    figures = report["figures"]
    for name in ("request_us", "budgeted_request_us", "vote_us", "three_calls_us", "vote_ratio"):
        value = figures[name]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, name
    assert math.isfinite(figures["accounting_overhead_us"])
