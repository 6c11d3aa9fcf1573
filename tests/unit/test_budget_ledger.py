"""Budget ledgers without a store: shares never exceed what is left, spending adds up."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from phalanx.agents import Budget, BudgetLedger, Usage

operations = st.lists(
    st.one_of(
        st.tuples(st.just("charge"), st.integers(0, 400)),
        st.tuples(st.just("reserve"), st.integers(1, 3000)),
        st.tuples(st.just("settle"), st.integers(0, 400)),
    ),
    max_size=25,
)


@given(st.integers(1, 5000), operations)
def test_a_share_is_never_more_than_what_the_parent_had_left(
    limit: int, steps: list[tuple[str, int]]
) -> None:
    """Whatever was spent and reserved before, a new share fits in what remained."""
    parent = BudgetLedger(budget=Budget(input_tokens=limit), scope="run")
    children = 0
    for kind, amount in steps:
        left = parent.left("input_tokens")
        assert left is not None
        if kind == "charge":
            parent.charge(Usage(input_tokens=amount))
        elif kind == "reserve":
            share = parent.reserve(f"c{children}", Budget(input_tokens=amount))
            children += 1
            assert share.input_tokens is not None
            assert share.input_tokens <= max(1, left), (share, left)
        elif children:
            parent.settle(f"c{children - 1}", Usage(input_tokens=amount))
    agent = BudgetLedger(budget=Budget(input_tokens=10**9), scope="agent", parent=parent)
    assert agent.left("input_tokens") == parent.left("input_tokens")


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 500)), max_size=20))
def test_usage_charged_to_an_agent_is_charged_to_its_run(usages: list[tuple[int, int]]) -> None:
    """Every token an agent spends is spent by its run too."""
    run = BudgetLedger(budget=Budget(), scope="run")
    agent = BudgetLedger(budget=Budget(), scope="agent", parent=run)
    for used_in, used_out in usages:
        agent.charge(Usage(input_tokens=used_in, output_tokens=used_out))
    assert run.input_used == agent.input_used == sum(u[0] for u in usages)
    assert run.output_used == agent.output_used == sum(u[1] for u in usages)


def test_max_tokens_has_a_default_and_follows_the_output_budget() -> None:
    """1024 without a budget; never more than the output tokens left."""
    assert BudgetLedger(budget=Budget(), scope="x").max_tokens() == 1024
    ledger = BudgetLedger(budget=Budget(output_tokens=300), scope="x")
    ledger.charge(Usage(output_tokens=250))
    assert ledger.max_tokens() == 50
