"""The actor benchmark runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ALWAYS = {"memory.tracemalloc.raw", "tell.raw", "ask.raw"}
WITH_PYKKA = {"memory.tracemalloc.pykka", "tell.pykka", "ask.pykka"}


def test_actor_benchmark_quick_json_reports_every_figure() -> None:
    """`benchmarks/actors.py --quick --json` exits 0 with every figure a positive number."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/actors.py", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["benchmark"] == "actors"
    figures = report["figures"]
    expected = set(ALWAYS)
    if report["pykka"]["status"] == "ok":
        expected |= WITH_PYKKA
    else:
        assert report["pykka"]["reason"], "a skipped pykka baseline must say why"
    assert expected <= figures.keys()
    for key, figure in figures.items():
        for name in ("phalanx", "other", "ratio"):
            value = figure[name]
            assert isinstance(value, float), (key, name, value)
            assert math.isfinite(value) and value > 0, (key, name, value)
        assert isinstance(figure["pass"], bool), key
    assert isinstance(report["all_targets_met"], bool)
    assert "PASS" in proc.stderr or "MISS" in proc.stderr
