"""Bad saga definitions are refused when the saga is defined, before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx import ForwardRecovery, Saga, SagaDefinitionError, SagaState, SagaStep


def act(state: SagaState) -> None:
    return None


def undo(result: Any) -> None:
    return None


def test_a_step_without_a_compensation_is_refused() -> None:
    """A step with no compensation is a definition error unless declared as such."""
    with pytest.raises(SagaDefinitionError, match="step 'b' has no compensation"):
        Saga("s", [SagaStep("a", act, undo), SagaStep("b", act)])
    saga = Saga("s", [SagaStep("a", act, undo), SagaStep("b", act)], require_compensation=False)
    assert saga.plan.order == ["a", "b"]


def test_a_dependency_cycle_is_refused() -> None:
    """Steps that depend on each other are named in the error."""
    with pytest.raises(SagaDefinitionError, match="depend on each other") as caught:
        Saga(
            "s",
            [
                SagaStep("a", act, undo, after=("c",)),
                SagaStep("b", act, undo, after=("a",)),
                SagaStep("c", act, undo, after=("b",)),
            ],
        )
    assert caught.value.saga == "s"
    assert "a" in caught.value.reason and "c" in caught.value.reason


def test_a_dag_runs_in_dependency_order_ties_by_declaration() -> None:
    """Declared dependencies decide the order; declaration order breaks ties."""
    saga = Saga(
        "s",
        [
            SagaStep("report", act, undo, after=("left", "right")),
            SagaStep("right", act, undo, after=("fetch",)),
            SagaStep("left", act, undo, after=("fetch",)),
            SagaStep("fetch", act, undo, after=()),
        ],
    )
    assert saga.plan.order == ["fetch", "right", "left", "report"]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([SagaStep("a", act, undo, after=("x",))], "runs after 'x', which is not a step"),
        ([SagaStep("a", act, undo), SagaStep("a", act, undo)], "appears twice"),
        ([SagaStep("a", act, lambda: None)], "must take exactly one argument"),
        ([SagaStep("a", act, lambda r, extra: None)], "must take exactly one argument"),
        (
            [
                SagaStep("a", act, undo, recover=ForwardRecovery(rerun="b")),
                SagaStep("b", act, undo),
            ],
            "not a step that runs before it",
        ),
        ([], "no steps"),
        ([SagaStep("a", act, undo, compensation_timeout=0)], "compensation_timeout=0"),
        ([SagaStep("a", act, undo, compensation_timeout=-1.0)], "compensation_timeout=-1.0"),
        (
            [SagaStep("a", act, undo, compensation_timeout=float("nan"))],
            "compensation_timeout=nan",
        ),
    ],
)
def test_other_bad_definitions(steps: list[SagaStep], message: str) -> None:
    """Unknown dependencies, duplicates, uncallable compensations, bad recovery: refused."""
    with pytest.raises(SagaDefinitionError, match=message):
        Saga("s", steps)


def test_bad_policies_are_refused() -> None:
    """Compensation order and failure policy are checked too."""
    with pytest.raises(SagaDefinitionError, match="compensation_order"):
        Saga("s", [SagaStep("a", act, undo)], compensation_order="random")  # type: ignore[arg-type]  # the bad value is the test
    with pytest.raises(SagaDefinitionError, match="on_compensation_failure"):
        Saga("s", [SagaStep("a", act, undo)], on_compensation_failure="retry")  # type: ignore[arg-type]  # the bad value is the test
    with pytest.raises(ValueError, match="max_rounds"):
        ForwardRecovery(rerun="a", max_rounds=0)
