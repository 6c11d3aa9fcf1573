"""`benchmarks/tools.py` runs end to end; its figures are never asserted on (too noisy)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.benchmark_runs import run_benchmark


@pytest.mark.slow
def test_tools_benchmark_quick_json_reports_every_figure(tmp_path: Path) -> None:
    """`tools.py --quick --json` exits 0 and reports a positive figure for each measure."""
    report = run_benchmark("tools.py", "--dir", str(tmp_path), timeout=120)
    assert report["benchmark"] == "tools" and isinstance(report["target_met"], bool)
    for name in ("direct_us", "plain_us", "guarded_us", "refused_us", "durable_call_us",
                 "durable_step_us", "durable_guarded_us", "durable_shared_us"):  # fmt: skip
        value = report["figures"][name]
        assert isinstance(value, float) and math.isfinite(value) and value > 0, name
    assert math.isfinite(report["figures"]["shared_breaker_overhead_us"])
    assert not list(tmp_path.iterdir()), "scratch files were left behind"
