"""A saga waiting on a failed compensation, resolved from the command line by a person."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chaos.harness import poll_until, wait_exit, workspace
from tests.saga.workflows import effects

pytestmark = pytest.mark.slow


def test_phalanx_dlq_resolve_resumes_a_waiting_saga(url: str, tmp_path: Path) -> None:
    """runs says waiting, show names the entry, `dlq resolve` lets the saga finish."""
    ledger = tmp_path / "ledger.jsonl"
    inputs = {"saga": "pipeline", "ledger": str(ledger), "fail": "c", "undo": {"b": "always"}}
    with workspace(tmp_path, url) as ws:
        run = ws.spawn_cli(
            "run", "tests.saga.workflows:run_saga", "--input", json.dumps(inputs),
            "--run-id", "wait1", "--json", label="run",
        )  # fmt: skip

        def waiting() -> bool:
            done = ws.cli("runs", "--json")
            return done.returncode == 0 and any(
                r["run_id"] == "wait1" and r["status"] == "waiting" for r in json.loads(done.stdout)
            )

        poll_until(waiting, 60, "the saga waits for a person", interval=0.2)
        shown = ws.cli("show", "wait1")
        assert shown.returncode == 0, shown.stderr
        assert "saga pipeline (orchestrated) waiting" in shown.stdout
        [failed] = [e for e in ws.events("wait1") if e["type"] == "CompensationFailed"]
        entry = failed["data"]["dead_letter_id"]
        assert f"phalanx dlq resolve {entry}" in shown.stdout
        resolved = ws.cli("dlq", "resolve", entry, "--result", '"undone by hand"', "--reason", "t")
        assert resolved.returncode == 0, resolved.stderr
        assert wait_exit(run, 60) == 0, run.describe()
        assert json.loads(run.stdout)["result"]["status"] == "compensated"
    # b was undone by hand (not in the ledger); a was undone by the saga after that.
    assert effects(ledger) == ["do:a", "do:b", "undo:a"]
