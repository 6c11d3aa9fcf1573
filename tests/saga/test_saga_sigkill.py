"""SIGKILL at every point of a saga's compensation: after resume each undo took effect once.

A real process runs the saga (steps a, b, c complete, d fails) and is killed with
SIGKILL just before or just after one of the appends that make up the compensation:
the decision to compensate, each compensation's start (with its step's first attempt),
each compensation step's completion, the saga's end. The test then resumes the run
(taking its lease over) and reads the external ledger the compensations write to: a
compensation in flight at the kill may have run twice, always with the same
idempotency key, and once deduplicated by that key every step is undone exactly once,
in reverse order.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import phalanx
from phalanx.patterns import saga_views
from tests.chaos.harness import wait_exit, workspace
from tests.saga.workflows import effects, read

pytestmark = pytest.mark.slow

#: (event type, occurrence): the appends of the compensation sequence, in order. Three
#: forward steps completed before it, so compensation steps complete as StepCompleted
#: number 4, 5 and 6.
POINTS = [
    ("SagaCompensating", 1),
    ("CompensationStarted", 1),
    ("StepCompleted", 4),
    ("CompensationStarted", 2),
    ("StepCompleted", 5),
    ("CompensationStarted", 3),
    ("StepCompleted", 6),
    ("SagaEnded", 1),
]


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize(("event_type", "occurrence"), POINTS)
async def test_a_kill_during_compensation_is_resumed_with_each_undo_once(
    url: str, tmp_path: Path, event_type: str, occurrence: int, when: str
) -> None:
    """Killed before/after one compensation append; resumed, every step is undone once."""
    ledger = tmp_path / "ledger.jsonl"
    inputs = {"saga": "pipeline", "ledger": str(ledger), "fail": "d"}
    faults = {f"kill_{when}_append": occurrence, "event_type": event_type}
    with workspace(tmp_path, url) as ws:
        argv = [sys.executable, "-m", "tests.saga.driver", url, "k1", "run_saga"]
        proc = ws.spawn(*argv, json.dumps(inputs), json.dumps(faults), label="saga")
        assert wait_exit(proc, 60) == -9, proc.describe()
    async with phalanx.open_runtime(url, lease_ttl=1.0) as runtime:
        outcome = await runtime.resume("k1", force=True)
        assert outcome.status == "completed", outcome
        assert outcome.result["status"] == "compensated"
        assert outcome.result["compensations"] == ["c", "b", "a"]
        [view] = saga_views((await runtime.history("k1")).events)
    assert view.status == "compensated" and view.compensations == ["c", "b", "a"]
    assert effects(ledger) == ["do:a", "do:b", "do:c", "undo:c", "undo:b", "undo:a"]
    keys: dict[str, set[str]] = defaultdict(set)
    for entry in read(ledger):
        if "undo" in entry:
            keys[entry["undo"]].add(entry["key"])
    # A compensation may have run twice (in flight at the kill), never under a new key.
    assert {name: len(k) for name, k in keys.items()} == {"a": 1, "b": 1, "c": 1}
