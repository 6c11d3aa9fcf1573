"""Voting (`phalanx.vote`): replicas compared, dissent surfaced, no majority escalated.

Real runs on both stores; each replica is a child run (or a step branch) whose answer
the test declares, so a wrong replica is deliberate and its effect is read back from
the journal.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import phalanx
from phalanx import Branch, ConfigError, NoConsensusError
from tests.durable.helpers import journal, of_type, until_status
from tests.patterns import vote_workflows as vw

RIGHT = {"answer": "Paris"}
WRONG = {"answer": "Lyon"}


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    vw.reset()
    yield
    vw.reset()


async def test_a_wrong_replica_is_outvoted_and_its_dissent_journaled(
    runtime: phalanx.Runtime,
) -> None:
    """Two of three agree: their answer is accepted, the third is a named dissenter."""
    replicas = {"a": RIGHT, "b": WRONG, "c": RIGHT}
    outcome = await runtime.run(vw.ask, {"replicas": replicas, "stop_early": False}, run_id="v")
    assert outcome.status == "completed", outcome.error
    result = outcome.result
    assert result["decision"] == "accepted" and result["answer"] == "Paris"
    assert result["votes"] == {"a": "Paris", "b": "Lyon", "c": "Paris"}
    assert result["dissenters"] == ["b"] and result["disagreement"] is True
    assert result["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    counts = {d["answer"]: d["count"] for d in result["distribution"]}
    assert counts == {"Paris": 2, "Lyon": 1}
    [detected] = of_type(await journal(runtime, "v"), "DisagreementDetected")
    assert detected.data["votes"] == {"a": "Paris", "b": "Lyon", "c": "Paris"}
    assert detected.data["decision"] == "accepted"


async def test_agreeing_replicas_record_no_disagreement(runtime: phalanx.Runtime) -> None:
    """Unanimous replicas: accepted, agreement 1, no DisagreementDetected."""
    replicas = {"a": RIGHT, "b": RIGHT, "c": RIGHT}
    outcome = await runtime.run(vw.ask, {"replicas": replicas, "stop_early": False}, run_id="v")
    assert outcome.result["agreement"] == 1.0 and outcome.result["disagreement"] is False
    assert of_type(await journal(runtime, "v"), "DisagreementDetected") == []


async def test_no_majority_escalates_to_a_person_and_resumes_with_their_answer(
    runtime: phalanx.Runtime,
) -> None:
    """Three different answers: the run parks waiting; a person's signal decides it."""
    replicas = {"a": RIGHT, "b": WRONG, "c": {"answer": "Nice"}}
    task = asyncio.create_task(runtime.run(vw.ask, {"replicas": replicas}, run_id="v"))
    await until_status(runtime, "v", "waiting")
    events = await journal(runtime, "v")
    [decided] = of_type(events, "VoteDecided")
    assert decided.data["decision"] == "escalated" and decided.data["answer"] is None
    [detected] = of_type(events, "DisagreementDetected")
    assert set(detected.data["votes"].values()) == {"Paris", "Lyon", "Nice"}
    [escalated] = of_type(events, "VoteEscalated")
    assert escalated.data["signal"] == phalanx.patterns.vote_signal("q")
    [told] = vw.NOTIFIED  # people were told once, through the dead-letter notifiers
    assert told.kind == "vote_escalated" and "phalanx signal v vote:q" in told.summary
    await runtime.signal("v", "vote:q", {"answer": "Paris", "by": "ada"})
    outcome = await task
    assert outcome.status == "completed", outcome.error
    assert outcome.result["decision"] == "escalated"
    assert outcome.result["answer"] == "Paris" and outcome.result["resolved_by"] == "ada"
    assert of_type(await journal(runtime, "v"), "VoteResolved")[0].data["by"] == "ada"


async def test_no_consensus_fails_when_the_policy_says_fail(runtime: phalanx.Runtime) -> None:
    """on_no_consensus='fail': the run fails with NoConsensusError naming every vote."""
    replicas = {"a": RIGHT, "b": WRONG}
    inputs = {"replicas": replicas, "on_no_consensus": "fail"}
    outcome = await runtime.run(vw.ask, inputs, run_id="v")
    assert outcome.status == "failed"
    assert outcome.error["type"].endswith("NoConsensusError")
    assert "Lyon" in outcome.error["message"] and "Paris" in outcome.error["message"]
    [decided] = of_type(await journal(runtime, "v"), "VoteDecided")
    assert decided.data["decision"] == "failed"


async def test_a_quorum_reached_early_cancels_the_replicas_still_running(
    runtime: phalanx.Runtime,
) -> None:
    """Two fast replicas agree: the slow third is cancelled, not waited for."""
    replicas = {"a": RIGHT, "b": RIGHT, "slow": {"answer": "Paris", "delay": 60}}
    outcome = await runtime.run(vw.ask, {"replicas": replicas}, run_id="v")
    assert outcome.result["decision"] == "accepted" and outcome.result["answer"] == "Paris"
    assert outcome.result["statuses"]["slow"] == "cancelled"
    assert "slow" not in outcome.result["votes"] or outcome.result["votes"]["slow"] is None
    assert outcome.result["agreement"] == 1.0


async def test_a_hanging_replica_runs_into_the_deadline_without_blocking_the_quorum(
    runtime: phalanx.Runtime,
) -> None:
    """Waiting for every replica, a hang is timed out at the deadline; the majority stands."""
    replicas = {"a": RIGHT, "b": RIGHT, "hung": {"hang": True}}
    inputs = {"replicas": replicas, "stop_early": False, "deadline": 1.0}
    outcome = await runtime.run(vw.ask, inputs, run_id="v")
    assert outcome.status == "completed", outcome.error
    assert outcome.result["decision"] == "accepted" and outcome.result["answer"] == "Paris"
    assert outcome.result["statuses"]["hung"] == "timed_out"


async def test_step_replicas_vote_like_child_runs(runtime: phalanx.Runtime) -> None:
    """Replicas as step branches: same decision, and a failed replica votes for nothing."""
    replicas = {"a": RIGHT, "b": {"fail": "boom"}, "c": RIGHT}
    inputs = {"replicas": replicas, "steps": True, "stop_early": False}
    outcome = await runtime.run(vw.ask, inputs, run_id="v")
    assert outcome.result["answer"] == "Paris" and outcome.result["statuses"]["b"] == "failed"
    assert outcome.result["dissenters"] == [] and outcome.result["disagreement"] is False


async def test_normalised_text_and_fields_count_as_one_answer(runtime: phalanx.Runtime) -> None:
    """Declared normalisation: case and spacing, or the chosen fields only, are compared."""
    loose = {"a": {"answer": "Paris."}, "b": {"answer": "  paris"}, "c": WRONG}
    outcome = await runtime.run(vw.ask, {"replicas": loose, "normalize": "text"}, run_id="t")
    assert outcome.result["decision"] == "accepted" and outcome.result["answer"] == "Paris."
    structured = {
        "a": {"answer": {"city": "Paris", "year": "2024", "note": "x"}},
        "b": {"answer": {"city": "Paris", "year": 2024, "note": "y"}},
        "c": {"answer": {"city": "Lyon", "year": 2024}},
    }
    inputs = {"replicas": structured, "normalize": "fields", "stop_early": False}
    outcome = await runtime.run(vw.ask, inputs, run_id="f")
    assert outcome.result["decision"] == "accepted" and outcome.result["dissenters"] == ["c"]


async def test_a_judge_decides_a_split_once_and_is_not_asked_again_on_resume(
    runtime: phalanx.Runtime,
) -> None:
    """No majority with a judge: the judge's pick is accepted; a resume replays it."""
    vw.CRASH_AFTER.add("after")
    replicas = {"a": {"answer": "short"}, "b": {"answer": "the longest answer"}}
    with pytest.raises(BaseException) as info:
        await runtime.run(vw.ask, {"replicas": replicas, "judge": True}, run_id="v")
    assert "Crash" in repr(info.value)
    outcome = await runtime.resume("v", force=True)
    assert outcome.status == "completed", outcome.error
    assert outcome.result["answer"] == "the longest answer"
    assert outcome.result["decided_by"] == "judge"
    assert vw.JUDGED["judge"] == 1 and vw.RAN == {"a": 1, "b": 1}


async def test_confidence_is_recorded_and_low_confidence_abstains(
    runtime: phalanx.Runtime,
) -> None:
    """Reported confidences are journaled; below min_confidence an answer does not count."""
    replicas = {
        "a": {"answer": {"city": "Paris", "confidence": 0.9}},
        "b": {"answer": {"city": "Lyon", "confidence": 0.1}},
        "c": {"answer": {"city": "Paris", "confidence": 0.8}},
    }
    inputs = {
        "replicas": replicas,
        "normalize": "fields",
        "stop_early": False,
        "min_confidence": 0.5,
    }
    outcome = await runtime.run(vw.ask, inputs, run_id="v")
    assert outcome.result["confidence"] == {"a": 0.9, "b": 0.1, "c": 0.8}
    assert outcome.result["agreement"] == 1.0 and outcome.result["dissenters"] == []
    reported = of_type(await journal(runtime, "v"), "ConfidenceReported")
    assert {e.data["replica"]: e.data["confidence"] for e in reported} == {
        "a": 0.9,
        "b": 0.1,
        "c": 0.8,
    }


@pytest.mark.parametrize(
    ("rule", "answers", "decision"),
    [
        ("unanimous", ["Paris", "Paris", "Lyon"], "escalated"),
        ("unanimous", ["Paris", "Paris", "Paris"], "accepted"),
        ("weighted", ["Lyon", "Paris", "Paris"], "accepted"),
        ("validated", ["12", "x", "12"], "accepted"),
    ],
)
async def test_each_built_in_rule_decides_as_declared(
    runtime: phalanx.Runtime, rule: str, answers: list[str], decision: str
) -> None:
    """unanimous, weighted (a weighs 3) and validated rules, over real runs."""
    replicas = {name: {"answer": a} for name, a in zip("abc", answers, strict=True)}
    inputs = {"replicas": replicas, "rule": rule, "stop_early": False, "steps": True}
    task = asyncio.create_task(runtime.run(vw.ask, inputs, run_id="v"))
    if decision == "escalated":
        await until_status(runtime, "v", "waiting")
        await runtime.signal("v", "vote:q", {"answer": "Paris"})
    outcome = await task
    assert outcome.result["decision"] == decision
    if rule == "weighted":
        assert outcome.result["answer"] == "Lyon"  # a alone outweighs b and c
    if rule == "validated":
        assert outcome.result["answer"] == "12" and outcome.result["dissenters"] == ["b"]


@pytest.mark.parametrize(
    ("replicas", "options", "setting"),
    [
        ({}, {}, "replicas"),
        ({"a": Branch(vw.replica)}, {"rule": "majority"}, "rule"),
        ({"a": Branch(vw.replica)}, {"normalize": 3}, "normalize"),
        ({"a": Branch(vw.replica)}, {"judge": "yes"}, "judge"),
        ({"a": Branch(vw.replica)}, {"max_disagreement": 1.5}, "max_disagreement"),
    ],
)
async def test_bad_vote_input_is_refused_before_anything_is_journaled(
    runtime: phalanx.Runtime, replicas: dict[str, Branch], options: dict[str, Any], setting: str
) -> None:
    """No replicas, a rule (or normaliser, judge) that is not callable: ConfigError."""
    errors: list[BaseException] = []

    @phalanx.workflow
    async def bad(ctx: phalanx.WorkflowContext) -> None:
        try:
            await phalanx.vote(ctx, "q", replicas, **options)
        except ConfigError as exc:
            errors.append(exc)

    outcome = await runtime.run(bad, {}, run_id="bad")
    assert outcome.status == "completed"
    [error] = errors
    assert setting in str(error)
    assert of_type(await journal(runtime, "bad"), "VoteStarted") == []


def test_no_consensus_error_survives_pickling() -> None:
    """NoConsensusError keeps its fields through pickle (journaled errors)."""
    import pickle

    error = NoConsensusError(vote="q", reason="no majority", votes={"a": 1})
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.votes == {"a": 1}


async def test_dissent_above_the_declared_threshold_escalates_a_majority(
    runtime: phalanx.Runtime,
) -> None:
    """max_disagreement=0.2: a 2-of-3 majority (dissent 1/3) is not accepted silently."""
    replicas = {"a": RIGHT, "b": WRONG, "c": RIGHT}
    inputs = {"replicas": replicas, "stop_early": False, "max_disagreement": 0.2, "steps": True}
    task = asyncio.create_task(runtime.run(vw.ask, inputs, run_id="v"))
    await until_status(runtime, "v", "waiting")
    [decided] = of_type(await journal(runtime, "v"), "VoteDecided")
    assert decided.data["decision"] == "escalated" and "above 0.2" in decided.data["reason"]
    await runtime.signal("v", "vote:q", {"answer": "Paris"})
    assert (await task).result["decided_by"] == "person"
