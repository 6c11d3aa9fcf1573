"""`benchmarks/evals.py --quick` runs both sides; its figures are never asserted on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_evals_benchmark_quick_runs_both_sides() -> None:
    """The quick benchmark scores its copied demo runs and reads them, both timed."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/evals.py", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["runs"] == 50 and report["criteria"] >= 12
    figure = report["figures"]["evals.deterministic"]
    assert figure["phalanx_s"] > 0 and figure["raw_s"] > 0
    assert len(figure["samples"]["phalanx"]) == len(figure["samples"]["raw"]) == 3
