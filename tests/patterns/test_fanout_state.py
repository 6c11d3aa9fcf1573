"""The fan-out's pure half: the policy's verdict and the replay of journaled events.

No store and no runs: `FanOutState` is fed outcomes and events directly, and its
answers are checked against a brute-force oracle (every way the branches still running
could end) and against its own replay.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.patterns import BranchOutcome, Policy
from phalanx.patterns._fanout_state import BranchStatus, FanOutState, Verdict

ENDINGS: tuple[BranchStatus, ...] = ("succeeded", "failed", "timed_out", "cancelled")
STARTED_AT = 1_000.0


@dataclass(frozen=True)
class Recorded:
    """An event as replay reads it (the journal's `Event` has these and more)."""

    type: str
    data: dict[str, Any]
    recorded_at: float = STARTED_AT


@st.composite
def policies(draw: st.DrawFn, total: int) -> Policy:
    """Any policy over `total` branches (a quorum of at most `total`)."""
    kind = draw(st.sampled_from(["all", "any", "quorum", "best_effort"]))
    if kind == "quorum":
        return Policy.quorum(draw(st.integers(1, total)))
    return {"all": Policy.all, "any": Policy.any, "best_effort": Policy.best_effort}[kind]()


@st.composite
def fan_outs(draw: st.DrawFn) -> tuple[Policy, list[str], list[BranchStatus]]:
    """A policy, the branches, and the statuses they end with, in the order they end."""
    total = draw(st.integers(1, 7))
    names = [f"b{i}" for i in range(total)]
    order = draw(st.permutations(names))
    statuses = draw(st.lists(st.sampled_from(ENDINGS), min_size=total, max_size=total))
    return draw(policies(total)), order, statuses


def new_state(policy: Policy, names: list[str], deadline: float | None = None) -> FanOutState:
    """A fan-out just started at STARTED_AT."""
    return FanOutState.start(
        op=3,
        name="fan",
        policy=policy,
        branches=names,
        run_id="p",
        now=STARTED_AT,
        deadline=deadline,
        run_deadline_at=None,
    )


def oracle(policy: Policy, total: int, succeeded: int, finished: int) -> Verdict:
    """The verdict by brute force: try every way the running branches could still end.

    `best_effort` waits for every branch; any other policy is settled exactly when no
    ending of the rest can change whether it is met.
    """
    if policy.kind == "best_effort":
        if finished < total:
            return Verdict.OPEN
        return Verdict.MET if succeeded >= 1 else Verdict.UNREACHABLE
    needed = policy.needed(total)
    possible = {
        succeeded + sum(rest) >= needed
        for rest in itertools.product((0, 1), repeat=total - finished)
    }
    if possible == {True}:
        return Verdict.MET
    if possible == {False}:
        return Verdict.UNREACHABLE
    return Verdict.OPEN


@given(fan_outs())
def test_decide_is_done_exactly_when_the_policy_is_met_or_out_of_reach(
    case: tuple[Policy, list[str], list[BranchStatus]],
) -> None:
    """After every outcome, decide() agrees with the brute-force oracle; done <=> not OPEN."""
    policy, order, statuses = case
    state = new_state(policy, sorted(order))
    total = len(order)
    assert state.decide() is Verdict.OPEN
    succeeded = 0
    for finished, (name, status) in enumerate(zip(order, statuses, strict=True), start=1):
        state.apply_finished(BranchOutcome(name=name, status=status))
        succeeded += status == "succeeded"
        verdict = state.decide()
        assert verdict is oracle(policy, total, succeeded, finished)
        assert policy.done(succeeded, finished, total) is (verdict is not Verdict.OPEN)
        if verdict is Verdict.MET:
            assert state.satisfied
        if verdict is Verdict.UNREACHABLE:
            assert not state.satisfied
    assert state.decide() is not Verdict.OPEN, "every branch ended: the fan-out is settled"


@given(fan_outs())
def test_all_is_out_of_reach_at_its_first_branch_that_does_not_succeed(
    case: tuple[Policy, list[str], list[BranchStatus]],
) -> None:
    """Under `all`, the verdict turns UNREACHABLE at the first non-success, never before."""
    _, order, statuses = case
    state = new_state(Policy.all(), order)
    for name, status in zip(order, statuses, strict=True):
        state.apply_finished(BranchOutcome(name=name, status=status))
        if status != "succeeded":
            assert state.decide() is Verdict.UNREACHABLE
            assert "can no longer meet its policy (all)" in state.stop_reason(Verdict.UNREACHABLE)
            return
        assert state.decide() is (
            Verdict.MET if len(state.finished) == len(order) else Verdict.OPEN
        )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


@st.composite
def endings(draw: st.DrawFn) -> tuple[list[str], list[BranchOutcome], list[float], set[str]]:
    """Branches, what each ended with as seen live, when (wall time), and which stalled."""
    total = draw(st.integers(1, 5))
    names = [f"b{i}" for i in range(total)]
    raws = [
        BranchOutcome(
            name=name,
            status=draw(st.sampled_from(ENDINGS)),
            value=draw(json_values),
            error=draw(st.none() | st.text(max_size=10)),
            duration_s=draw(st.floats(0, 100, allow_nan=False)),
            run_id=draw(st.none() | st.just(f"p.3.{name}")),
        )
        for name in names
    ]
    times = [STARTED_AT + draw(st.floats(0, 20, allow_nan=False)) for _ in names]
    stalled = set(draw(st.lists(st.sampled_from(names), unique=True)))
    return names, raws, times, stalled


@given(endings(), st.sampled_from([None, 5.0]))
def test_what_the_live_fan_out_journals_replays_to_the_same_state(
    case: tuple[list[str], list[BranchOutcome], list[float], set[str]], deadline: float | None
) -> None:
    """Replaying the events of a live fan-out (through JSON) rebuilds its outcomes and verdict."""
    names, raws, times, stalled = case
    live = new_state(Policy.best_effort(), names, deadline)
    journal = [Recorded("GatherStarted", live.started_event())]
    for name in sorted(stalled):
        journal.append(Recorded("BranchStalled", live.stall(name, silent_for=2.0)))
    for raw, now in zip(raws, times, strict=True):
        outcome, pending = live.conclude(raw, now=now)
        journal.extend(Recorded(t, json.loads(json.dumps(data))) for t, data in pending)
        live.apply_finished(outcome)
    journal.append(Recorded("GatherCompleted", live.completed_event(elapsed_s=1.0)))

    replayed = FanOutState.replay(
        op=3, name="fan", policy=Policy.best_effort(), branches=names, events=list(journal)
    )

    assert replayed.outcomes() == live.outcomes()
    assert replayed.stalled == live.stalled == stalled
    assert replayed.decide() is live.decide()
    assert replayed.completed is live.satisfied
    assert (replayed.started_at, replayed.deadline_at) == (live.started_at, live.deadline_at)
    assert replayed.run_ids == {n: f"p.3.{n}" for n in names}


@given(endings())
def test_an_ending_at_or_after_the_deadline_is_timed_out_and_an_answer_only_late(
    case: tuple[list[str], list[BranchOutcome], list[float], set[str]],
) -> None:
    """conclude(): from the deadline on, every ending is timed_out; an answer is only late.

    A timed-out branch's duration stops at the deadline, even when the ending is noticed
    later (a fan-out resumed after its deadline).
    """
    names, raws, times, _ = case
    state = new_state(Policy.all(), names, deadline=10.0)
    for raw, now in zip(raws, times, strict=True):
        outcome, pending = state.conclude(raw, now=now)
        types = [t for t, _ in pending]
        assert pending[-1][1]["branch"] == raw.name
        if now < STARTED_AT + 10.0:
            assert outcome.duration_s == round(raw.duration_s, 3)
            assert types == ["BranchFinished"]
            assert (outcome.status, outcome.value, outcome.error) == (
                raw.status,
                raw.value,
                raw.error,
            )
            continue
        assert outcome.status == "timed_out" and outcome.value is None
        assert outcome.duration_s == round(min(raw.duration_s, 10.0), 3)
        assert outcome.error == "no answer within the deadline (10.0s)"
        if raw.status == "succeeded":
            assert types == ["BranchLate", "BranchFinished"]
            assert pending[0][1]["value"] == raw.value
        else:
            assert types == ["BranchFinished"]


def test_the_earlier_of_the_fan_out_and_run_deadlines_wins() -> None:
    """start(): the deadline is the earlier of `now + deadline` and the run's own."""

    def deadline_at(deadline: float | None, run_deadline_at: float | None) -> float | None:
        return FanOutState.start(
            op=1,
            name="f",
            policy=Policy.all(),
            branches=["a"],
            run_id="p",
            now=STARTED_AT,
            deadline=deadline,
            run_deadline_at=run_deadline_at,
        ).deadline_at

    assert deadline_at(None, None) is None
    assert deadline_at(5.0, None) == STARTED_AT + 5.0
    assert deadline_at(None, STARTED_AT + 2.0) == STARTED_AT + 2.0
    assert deadline_at(5.0, STARTED_AT + 2.0) == STARTED_AT + 2.0
    assert deadline_at(1.0, STARTED_AT + 2.0) == STARTED_AT + 1.0


def test_branch_outcomes_take_keyword_arguments_only() -> None:
    """BranchOutcome's fields are keyword-only: a positional call is a TypeError."""
    outcome = BranchOutcome(name="a", status="succeeded", value=1)
    assert outcome.to_json()["value"] == 1
    with pytest.raises(TypeError):
        BranchOutcome("a", "succeeded")  # type: ignore[call-arg]  # the point of the test
