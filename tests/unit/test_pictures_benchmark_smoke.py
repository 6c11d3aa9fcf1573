"""`benchmarks/pictures.py --quick` runs end to end; its figures are never asserted on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pictures_benchmark_reports_every_figure_and_its_baseline() -> None:
    """Each figure (timeline, diagram, page cold and warm) and its baseline ran and is > 0."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/pictures.py", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["events"] > 1000 and report["rounds"] == 1
    figures = report["figures"]
    assert set(figures) == {"timeline", "diagram", "page_cold", "page"}
    for figure in figures.values():
        assert figure["median_s"] > 0 and figure["baseline_median_s"] > 0
        assert figure["baseline"] in ("read", "read_flat")
