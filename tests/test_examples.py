"""The programs in examples/ run and tell the truth about what happened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.quickstart import summarize

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_crashes_resumes_and_summarises_from_its_ledger() -> None:
    """The quickstart SIGKILLs its run mid-search, resumes it, and reports what ran."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHALANX_", "QUICKSTART_"))}
    done = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "exit status -9" in done.stdout
    summary = done.stdout.rpartition("side effects in the ledger:")[2]
    for question, verdict in [
        ("history", "ran once"),
        ("failure modes", "ran once"),
        ("fixes", "ran 2 times, with the same idempotency key"),
        ("costs", "ran once"),
    ]:
        assert f"search agent timeouts: {question}: {verdict}" in summary, summary
    assert "--store sqlite:////" in done.stdout


def test_quickstart_summary_says_what_the_ledger_says() -> None:
    """The closing summary is computed from the ledger, not printed whatever happened."""
    ledger = [
        {"effect": "search a", "key": "r:2"},
        {"effect": "search b", "key": "r:3"},
        {"effect": "search b", "key": "r:9"},
    ]
    assert summarize(ledger).splitlines() == [
        "search a: ran once",
        "search b: ran 2 times, with DIFFERENT keys (a bug)",
    ]
