"""`benchmarks/saga.py` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import math
from pathlib import Path

from tests.benchmark_runs import run_benchmark

FIGURES = {
    "saga.step.vs_plain_step",
    "saga.compensate.vs_plain_steps",
    "plain.step.vs_floor",
    "saga.step.vs_floor",
    "saga.compensate.vs_floor",
}


def test_saga_benchmark_quick_json_reports_every_figure(tmp_path: Path) -> None:
    """`saga.py --quick --json` exits 0; each figure and its baseline ran and are positive."""
    report = run_benchmark("saga.py", "--steps", "5", "--dir", str(tmp_path), timeout=120)
    assert set(report["figures"]) == FIGURES
    for key, figure in report["figures"].items():
        for name in ("phalanx", "raw", "ratio"):
            value = figure[name]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (key, name)
        assert len(figure["samples"]["phalanx"]) == len(figure["samples"]["raw"]) == 3
    assert isinstance(report["all_targets_met"], bool)
