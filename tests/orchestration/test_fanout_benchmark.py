"""The fan-out benchmark runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIGURES = {
    "fanout.step.floor",
    "fanout.step.gather",
    "fanout.run.floor",
    "fanout.run.gather",
}


@pytest.mark.slow
def test_fanout_benchmark_quick_json_reports_every_figure() -> None:
    """`benchmarks/fanout.py --quick --json` exits 0 with every figure a positive number."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/fanout.py", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert set(report["figures"]) == FIGURES
    for key, figure in report["figures"].items():
        for name in ("phalanx", "raw", "ratio"):
            value = figure[name]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, name)
    assert isinstance(report["figures"]["fanout.step.floor"]["pass"], bool)
    # Step branches journal one event per branch plus the run's and fan-out's own four.
    assert report["events"]["step"] == report["branches"] + 4
    assert isinstance(report["all_targets_met"], bool)
