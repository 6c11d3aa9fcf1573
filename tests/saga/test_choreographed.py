"""The choreographed saga in one process: the same outcomes as the orchestrated one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import phalanx
from phalanx.journal import StreamAppend
from phalanx.patterns import saga_views
from tests.durable.helpers import of_type
from tests.saga import workflows
from tests.saga.workflows import CHOREOGRAPHY, NAMES, effects, run_choreography


async def choreograph(runtime: phalanx.Runtime, **inputs: object) -> phalanx.RunOutcome:
    """Run a saga with every participant serving in this process."""
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(CHOREOGRAPHY.serve(runtime.store, clock=runtime.clock))
        try:
            return await runtime.run(run_choreography, inputs)
        finally:
            serving.cancel()


async def test_without_a_failure_the_relay_completes(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """Each participant reacts to its predecessor: every step once, in order."""
    ledger = tmp_path / "ledger.jsonl"
    outcome = await choreograph(runtime, ledger=str(ledger))
    assert outcome.result["status"] == "completed"
    assert effects(ledger) == [f"do:{n}" for n in NAMES]
    [view] = saga_views((await runtime.history(outcome.run_id)).events)
    assert (view.style, view.status) == ("choreographed", "completed")


@pytest.mark.parametrize("position", range(len(NAMES)))
async def test_failure_at_every_position_compensates_in_reverse(
    runtime: phalanx.Runtime, tmp_path: Path, position: int
) -> None:
    """A failure event makes the earlier participants undo their steps, last first."""
    ledger = tmp_path / "ledger.jsonl"
    done = list(NAMES[:position])
    outcome = await choreograph(runtime, ledger=str(ledger), fail=NAMES[position])
    result = outcome.result
    assert (result["status"], result["compensations"]) == ("compensated", done[::-1])
    assert effects(ledger) == [f"do:{n}" for n in done] + [f"undo:{n}" for n in done[::-1]]
    history = await runtime.history(outcome.run_id)
    names = [e.data["name"] for e in of_type(history.events, "CompensationCompleted")]
    assert names == done[::-1]


async def test_each_participant_commits_its_reaction_with_its_position(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """Every reaction is paired with one position commit, in the same transaction."""
    outcome = await choreograph(runtime, ledger=str(tmp_path / "ledger.jsonl"), fail="c")
    store = runtime.store
    for name in ("a", "b", "c"):
        positions = await store.read_stream(f"saga-participant:relay:{name}")
        assert positions, name
        for commit in positions:
            [reaction] = await store.read_all(after=commit.position - 2, limit=1)
            assert reaction.stream_id == f"saga:relay:{outcome.run_id}"
    # A second copy of a participant at a stale version cannot commit a reaction.
    with pytest.raises(phalanx.ConcurrencyError):
        await store.append_many(
            [
                StreamAppend(f"saga:relay:{outcome.run_id}", [phalanx.NewEvent("StepCompleted")]),
                StreamAppend(
                    "saga-participant:relay:a",
                    [phalanx.NewEvent("PositionCommitted")],
                    expected_version=0,
                ),
            ]
        )


async def test_a_hanging_compensation_is_bounded_by_its_timeout(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """compensation_timeout bounds each attempt: a hung undo ends the saga failed, not stuck."""
    ledger = tmp_path / "ledger.jsonl"
    saga = workflows.TIMED_CHOREOGRAPHY
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(saga.serve(runtime.store, clock=runtime.clock))
        try:
            outcome = await runtime.run(
                workflows.run_timed_choreography,
                {"ledger": str(ledger), "fail": "c", "undo": {"b": "hang"}},
            )
        finally:
            serving.cancel()
    assert outcome.result["status"] == "failed", outcome.result
    hung = [e for e in workflows.read(ledger) if e.get("undo_hung")]
    assert hung and all(e["undo_hung"] == "b" for e in hung)
    history = await runtime.history(outcome.run_id)
    [failed] = of_type(history.events, "CompensationFailed")
    assert failed.data["name"] == "b"
