"""A summarised agent killed with SIGKILL resumes without asking its summariser again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phalanx.agents import Budget

ROOT = Path(__file__).resolve().parents[2]


def calls(path: Path) -> list[str]:
    """The system message (start) of every model request answered so far."""
    return [json.loads(line)["system"] for line in path.read_text().splitlines() if line]


@pytest.mark.slow
def test_sigkill_after_a_summary_replays_it_without_a_model_call(tmp_path: Path, url: str) -> None:
    """Killed after summarising, mid next call: resume reuses the journaled summary."""
    ledger = tmp_path / "calls.jsonl"
    ledger.touch()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "PHALANX_"))},
        "PHALANX_STORE": url,
        "BUDGET_CALLS": str(ledger),
        "PYTHONPATH": str(ROOT),
    }
    budget = Budget(context_tokens=400, actions=("summarize", "fail")).to_json()
    inputs = {"key": "k", "budget": budget, "delay_after": 4}
    command = [sys.executable, "-m", "phalanx.cli"]
    log = (tmp_path / "runner.log").open("w")
    runner = subprocess.Popen(
        [*command, "run", "tests.agents.budget_workflows:read", "--input", json.dumps(inputs),
         "--run-id", "r", "--lease-ttl", "2"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        # The fifth request sleeps: by then the summary is journaled (it was the fourth).
        while len(calls(ledger)) < 5:
            assert runner.poll() is None, (tmp_path / "runner.log").read_text()
            assert time.monotonic() < deadline, f"only {calls(ledger)} before the deadline"
            time.sleep(0.02)
        runner.send_signal(signal.SIGKILL)
    finally:
        runner.wait(timeout=10)
        log.close()
    assert runner.returncode == -signal.SIGKILL
    before = calls(ledger)
    summaries = sum(1 for c in before if c.startswith("You summarise"))
    assert summaries == 1, before
    resumed = subprocess.run(
        [*command, "resume", "r", "--force", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"
    after = calls(ledger)[len(before) :]
    assert after and not any(c.startswith("You summarise") for c in after), after
    events = subprocess.run(
        [*command, "events", "r", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    summarized = [json.loads(line) for line in events.splitlines() if "ContextSummarized" in line]
    assert len([e for e in summarized if e["type"] == "ContextSummarized"]) == 1
