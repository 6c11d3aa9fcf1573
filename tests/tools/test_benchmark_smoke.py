"""`benchmarks/tools.py` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tools_benchmark_quick_json_reports_every_figure(tmp_path: Path) -> None:
    """`tools.py --quick --json` exits 0 and reports a positive figure for each measure."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/tools.py", "--quick", "--json", "--dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["benchmark"] == "tools" and isinstance(report["target_met"], bool)
    for name in ("direct_us", "plain_us", "guarded_us", "refused_us", "durable_call_us",
                 "durable_step_us", "durable_guarded_us", "durable_shared_us"):  # fmt: skip
        value = report["figures"][name]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, name
    assert math.isfinite(report["figures"]["shared_breaker_overhead_us"])
    assert not list(tmp_path.iterdir()), "scratch files were left behind"
