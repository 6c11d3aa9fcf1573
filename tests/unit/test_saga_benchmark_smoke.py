"""`benchmarks/saga.py` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FIGURES = {
    "saga.step.vs_plain_step",
    "saga.compensate.vs_plain_steps",
    "plain.step.vs_floor",
    "saga.step.vs_floor",
    "saga.compensate.vs_floor",
}


def test_saga_benchmark_quick_json_reports_every_figure(tmp_path: Path) -> None:
    """`saga.py --quick --json` exits 0; each figure and its baseline ran and are positive."""
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/saga.py",
            "--quick",
            "--json",
            "--steps",
            "5",
            "--dir",
            str(tmp_path),
        ],
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
        assert len(figure["samples"]["phalanx"]) == len(figure["samples"]["raw"]) == 3
    assert isinstance(report["all_targets_met"], bool)
