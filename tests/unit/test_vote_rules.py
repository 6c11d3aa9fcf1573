"""Vote rules and normalisation, without a store: when a tally is settled, and for whom."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.patterns import Ballot, Tally, fields, majority, quorum, text, unanimous, weighted
from phalanx.patterns._vote_rules import canonical, group_ballots

REPLICAS = ("a", "b", "c")


def tally(answers: dict[str, Any], similar: Any = None) -> Tally:
    """A tally of `answers` (replica to answer; None: the replica failed)."""
    ballots = {
        r: Ballot(replica=r, status="failed")
        if a is None
        else Ballot(replica=r, status="succeeded", answer=a, key=canonical(a))
        for r, a in answers.items()
    }
    return Tally(
        replicas=REPLICAS, ballots=ballots, groups=group_ballots(REPLICAS, ballots, similar)
    )


def test_majority_settles_as_soon_as_two_of_three_agree() -> None:
    """Two matching ballots settle a 3-replica majority before the third arrives."""
    ruling = majority()(tally({"a": "x", "b": "x"}))
    assert ruling.settled and ruling.winner == canonical("x")


def test_majority_waits_while_the_last_replica_could_decide() -> None:
    """One each for two answers: the third replica decides, so not settled yet."""
    assert not majority()(tally({"a": "x", "b": "y"})).settled


def test_majority_settles_without_a_winner_when_none_can_pass_half() -> None:
    """x, y and a failure: nobody can reach two, settled with no winner."""
    ruling = majority()(tally({"a": "x", "b": "y", "c": None}))
    assert ruling.settled and ruling.winner is None


def test_unanimous_settles_at_the_first_dissent() -> None:
    """Two different answers end a unanimity vote at once."""
    ruling = unanimous()(tally({"a": "x", "b": "y"}))
    assert ruling.settled and ruling.winner is None


def test_weighted_lets_a_heavy_replica_win_alone() -> None:
    """a weighs 3 of 5: its answer passes half the weight by itself."""
    ruling = weighted({"a": 3})(tally({"a": "x"}))
    assert ruling.settled and ruling.winner == canonical("x")


def test_quorum_and_weighted_refuse_impossible_settings() -> None:
    """k < 1, negative weights, a threshold below one half: ValueError."""
    with pytest.raises(ValueError, match="k >= 1"):
        quorum(0)
    with pytest.raises(ValueError, match="negative"):
        weighted({"a": -1})
    with pytest.raises(ValueError, match="threshold"):
        weighted({}, threshold=0.3)


def test_a_similarity_function_groups_near_answers() -> None:
    """With `similar`, answers within one of each other count as one."""
    close = tally({"a": 10, "b": 11, "c": 50}, similar=lambda x, y: abs(x - y) <= 1)
    [first, second] = close.groups
    assert first.replicas == ("a", "b") and second.replicas == ("c",)


def test_text_and_fields_normalise_what_is_compared() -> None:
    """text folds case, spacing and a final dot; fields keeps the named ones, converted."""
    assert text("  The  ANSWER. ") == text("the answer")
    pick = fields("city", year=int)
    assert pick({"city": "Paris", "year": "2024", "x": 1}) == {"city": "Paris", "year": 2024}
    assert pick("not a mapping") is None


@given(st.lists(st.sampled_from(["x", "y", "z", None]), min_size=3, max_size=3))
def test_a_settled_majority_never_changes_with_more_ballots(answers: list[str | None]) -> None:
    """Whatever the third ballot, a ruling settled on two ballots stays the same."""
    early = majority()(tally(dict(zip(REPLICAS[:2], answers[:2], strict=True))))
    final = majority()(tally(dict(zip(REPLICAS, answers, strict=True))))
    assert final.settled
    if early.settled:
        assert early.winner == final.winner
