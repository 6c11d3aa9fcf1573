"""Running a benchmark script the way its smoke test does: `--quick --json`, from the root.

Smoke tests assert that a benchmark and its baselines ran, never a timing; they all
start it the same way, so here it is once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str, timeout: float) -> dict[str, Any]:
    """Run `benchmarks/SCRIPT --quick --json ARGS…`; assert it exited 0; its JSON report."""
    proc = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--quick", "--json", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report
