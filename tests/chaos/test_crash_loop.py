"""Chaos: a step that SIGKILLs its own process on every start cannot loop for ever.

A step in flight at a crash runs again on resume. Its start rides in the commit of its
end, so a first crash leaves no trace; a resumed runner journals each start before
the step runs, so every later crash is counted in the journal, and once the starts of
one attempt reach the runtime's `crash_limit` the step fails with
`StepCrashLoopError` instead of running again: the run ends failed, its completed
step never re-ran, and every start of the fatal step used the same idempotency key.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from tests.chaos.harness import Workspace, wait_exit, workspace
from tests.chaos.workflows import read_ledger

pytestmark = pytest.mark.slow

RUN_ID = "loop"
LIMIT = 3


def spawn(ws: Workspace, ledger: str, mode: str) -> int:
    """Run (or resume) `crash_loop` in a fresh process; its exit code."""
    argv = [sys.executable, "-m", "tests.chaos.crash_loop_driver", ws.url, RUN_ID, ledger]
    proc = ws.spawn(*argv, str(LIMIT), mode, label=mode)
    code = wait_exit(proc, 60)
    assert code in (-signal.SIGKILL, 1), proc.describe()
    return code


def test_a_step_that_kills_its_process_every_time_fails_after_the_limit(
    tmp_path: Path, url: str
) -> None:
    """crash_limit journaled starts of a fatal step end the run failed, each effect keyed."""
    with workspace(tmp_path, url) as ws:
        ledger = str(tmp_path / "ledger.jsonl")
        assert spawn(ws, ledger, "run") == -signal.SIGKILL
        crashed = ws.events(RUN_ID)
        assert [e["type"] for e in crashed] == ["RunStarted", "StepStarted", "StepCompleted"]

        codes = [spawn(ws, ledger, "resume") for _ in range(LIMIT + 1)]
        # The first run's crash left no start; each resume journals one, then dies,
        # until the journal holds LIMIT starts and the next resume fails the step.
        assert codes == [-signal.SIGKILL] * LIMIT + [1]

        events = ws.events(RUN_ID)
        fatal = [e for e in events if e["data"].get("name") == "fatal"]
        assert [e["type"] for e in fatal] == ["StepStarted"] * LIMIT + ["StepFailed"]
        error = fatal[-1]["data"]["error"]
        assert error["type"] == "phalanx._errors.StepCrashLoopError"
        assert error["fields"]["crashes"] == LIMIT
        assert fatal[-1]["data"]["retry_at"] is None
        assert events[-1]["type"] == "RunFailed"

        performed = [line for line in read_ledger(ledger)]
        assert [p["step"] for p in performed].count("first") == 1, "a completed step re-ran"
        keys = {p["key"] for p in performed if p["step"] == "fatal"}
        assert len(keys) == 1 and len([p for p in performed if p["step"] == "fatal"]) == LIMIT + 1

        shown = ws.cli("show", RUN_ID, "--json")
        assert shown.returncode == 0, shown.stderr
        steps = {s["name"]: s for s in json.loads(shown.stdout)["steps"]}
        assert steps["fatal"]["status"] == "failed"
        assert steps["fatal"]["attempts"] == LIMIT
        assert steps["first"]["attempts"] == 1

        again = ws.cli("resume", RUN_ID, "--json")
        assert again.returncode == 1, "a failed run stays failed"
