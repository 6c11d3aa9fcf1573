"""Each failure-mode detector catches its scripted scenario and passes its clean twin."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import phalanx
from phalanx.evals import Rubric, score_runs

from ..durable.helpers import until_status
from . import workflows as wf


def _rubric(evaluator: str) -> Rubric:
    return Rubric.from_data({"rubric": "mast", "criteria": [{"name": "c", "evaluator": evaluator}]})


async def _score(runtime: phalanx.Runtime, evaluator: str, flow: Any, inputs: dict[str, Any]):
    outcome = await runtime.run(flow, inputs)
    report = await score_runs(runtime, _rubric(evaluator), [outcome.run_id])
    return outcome, report.runs[0].results[0]


async def test_step_repetition_caught(runtime: phalanx.Runtime) -> None:
    """One tool call repeated three times with the same arguments is a loop."""
    _, result = await _score(runtime, "step_repetition", wf.looping, {"loop": True})
    assert not result.passed and result.score == 0
    assert 'lookup({"query": "leases"}) 3 times' in result.detail


async def test_step_repetition_clean(runtime: phalanx.Runtime) -> None:
    """Three calls with different arguments are no loop."""
    _, result = await _score(runtime, "step_repetition", wf.looping, {"loop": False})
    assert result.passed, result.detail


async def test_termination_unawareness_caught(runtime: phalanx.Runtime) -> None:
    """An agent that never answers runs into its turn bound, and that is caught."""
    outcome, result = await _score(
        runtime, "termination_unawareness", wf.unbounded, {"answers": False}
    )
    assert outcome.status == "failed"
    assert not result.passed and "ran into its bound" in result.detail


async def test_termination_unawareness_clean(runtime: phalanx.Runtime) -> None:
    """An agent that answers within its bound is not flagged."""
    _, result = await _score(runtime, "termination_unawareness", wf.unbounded, {"answers": True})
    assert result.passed, result.detail


async def test_peer_going_on_after_the_conversation_ended_caught(runtime: phalanx.Runtime) -> None:
    """A peer that keeps working after its conversation told it to stop is caught."""
    _, result = await _score(runtime, "termination_unawareness", wf.lingering, {"linger": True})
    assert not result.passed
    assert "went on after its conversation was told to stop (2 step(s): afterthought/0" in (
        result.detail
    )


async def test_peers_that_stop_when_told_are_clean(runtime: phalanx.Runtime) -> None:
    """Peers that return when their conversation ends are not flagged."""
    _, result = await _score(runtime, "termination_unawareness", wf.lingering, {"linger": False})
    assert result.passed, result.detail


async def test_premature_termination_caught(runtime: phalanx.Runtime) -> None:
    """An answer asked for while the fan-out still runs is premature."""
    _, result = await _score(runtime, "premature_termination", wf.premature, {"wait": False})
    assert not result.passed
    assert "before gather 'sources' had finished" in result.detail


async def test_premature_termination_clean(runtime: phalanx.Runtime) -> None:
    """An answer after the fan-out completed is not premature."""
    _, result = await _score(runtime, "premature_termination", wf.premature, {"wait": True})
    assert result.passed, result.detail


async def test_unacknowledged_partial_caught(runtime: phalanx.Runtime) -> None:
    """A synthesis from a partial fan-out without accept_partial nor naming the gap is caught."""
    _, result = await _score(runtime, "unacknowledged_partial", wf.unacknowledged, {})
    assert not result.passed
    assert any("without an accept_partial decision" in e for e in result.evidence)
    assert any("does not name the missing web_search" in e for e in result.evidence)


async def test_unacknowledged_partial_clean(runtime: phalanx.Runtime) -> None:
    """The research demo with a hanging source accepts the partial result and names it."""
    from phalanx.demo import research

    outcome, result = await _score(
        runtime,
        "unacknowledged_partial",
        research,
        {"faults": {"web_search": "hang"}, "deadline_s": 1.5, "heartbeat_s": 1.0},
    )
    assert outcome.result["partial"] is True
    assert result.passed, result.detail


async def test_ignored_tool_error_caught(runtime: phalanx.Runtime) -> None:
    """An answer that follows a failed tool call without a word about it is caught."""
    _, result = await _score(runtime, "ignored_tool_errors", wf.tool_error, {"admit": False})
    assert not result.passed
    assert "answered after weather failed" in result.detail


async def test_ignored_tool_error_clean(runtime: phalanx.Runtime) -> None:
    """An answer that says the tool failed is fine."""
    _, result = await _score(runtime, "ignored_tool_errors", wf.tool_error, {"admit": True})
    assert result.passed, result.detail


@pytest.mark.parametrize("decide", [None, "escalated"])
async def test_unresolved_disagreement_caught(runtime: phalanx.Runtime, decide: str | None) -> None:
    """A disagreement with no decision, or escalated and never answered, is unresolved."""
    _, result = await _score(
        runtime, "unresolved_disagreement", wf.disagreement, {"decide": decide}
    )
    assert not result.passed and "left unresolved" in result.detail


async def test_unresolved_disagreement_clean(runtime: phalanx.Runtime) -> None:
    """A disagreement the vote decided is resolved."""
    _, result = await _score(
        runtime, "unresolved_disagreement", wf.disagreement, {"decide": "accepted"}
    )
    assert result.passed, result.detail


async def test_real_vote_outvoted_dissent_is_resolved(runtime: phalanx.Runtime) -> None:
    """`vote` with one wrong replica: dissent journaled, the majority decided: resolved."""
    from phalanx.demo._vote import vote_demo

    outcome, result = await _score(
        runtime, "unresolved_disagreement", vote_demo, {"faults": {"replica_2": "wrong"}}
    )
    history = await runtime.history(outcome.run_id)
    assert any(e.type == "DisagreementDetected" for e in history.events)
    assert result.passed, result.detail


async def test_real_vote_escalation_unresolved_until_a_person_answers(
    runtime: phalanx.Runtime,
) -> None:
    """A split vote escalates: unresolved while it waits, resolved once a person answers."""
    from phalanx.demo._vote import vote_demo

    rubric = _rubric("unresolved_disagreement")
    faults = {"replica_2": "wrong", "replica_3": "wrong"}
    async with asyncio.TaskGroup() as group:
        running = group.create_task(runtime.run(vote_demo, {"faults": faults}, run_id="split"))
        await until_status(runtime, "split", "waiting")
        waiting = (await score_runs(runtime, rubric, ["split"])).runs[0].results[0]
        assert not waiting.passed and "escalated, nobody answered" in waiting.detail
        await runtime.signal("split", "vote:capital", {"answer": "Canberra", "by": "ana"})
    assert running.result().status == "completed"
    report = await score_runs(runtime, rubric, ["split"])
    assert report.runs[0].passed, report.summary()
