"""Budgets against context bloat: enforced at every boundary, journaled, replayed exactly.

Real runs on both stores with the scripted model behind a recording fake (`Counting`),
so each test sees exactly which requests reached the model.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import phalanx
from phalanx.agents import (
    DEFAULT_MAX_TOKENS,
    Budget,
    BudgetLedger,
    PayloadLimit,
    Prices,
    Usage,
    estimate_request,
)
from tests.agents import budget_workflows as bw
from tests.durable.helpers import journal, of_type, reached

#: How the summariser's requests begin (its system message).
SUMMARY_INSTRUCTIONS_START = "You summarise the earlier part"


@pytest.fixture(autouse=True)
def _fresh_models() -> Any:
    bw.MODELS.clear()
    yield
    bw.MODELS.clear()


def summarising(request: Any) -> bool:
    """Whether `request` is the summariser's."""
    return (request.messages[0].content or "").startswith(SUMMARY_INSTRUCTIONS_START)


def sizes(key: str) -> list[int]:
    """The estimated input tokens of every request the model really answered."""
    return [estimate_request(r) for r in bw.MODELS[key].requests]


async def test_every_request_carries_max_tokens_even_without_a_budget(
    runtime: phalanx.Runtime,
) -> None:
    """No budget: each request has the default output limit, never an unbounded one."""
    outcome = await runtime.run(bw.read, {"key": "k"}, run_id="r")
    assert outcome.status == "completed", outcome.error
    assert {r.max_tokens for r in bw.MODELS["k"].requests} == {DEFAULT_MAX_TOKENS}


async def test_max_tokens_shrinks_to_the_output_budget_left(runtime: phalanx.Runtime) -> None:
    """An output budget lowers each request's max_tokens to what remains of it."""
    budget = Budget(output_tokens=200).to_json()
    outcome = await runtime.run(bw.read, {"key": "k", "budget": budget}, run_id="r")
    assert outcome.status == "completed", outcome.error
    limits = [r.max_tokens for r in bw.MODELS["k"].requests]
    assert limits[0] == 200 and limits == sorted(limits, reverse=True) and limits[-1] < 200


async def test_a_call_over_the_agent_budget_is_not_sent_and_fails_typed(
    runtime: phalanx.Runtime,
) -> None:
    """context_tokens too small, action fail: BudgetExceededError, the call never sent."""
    budget = Budget(context_tokens=150, actions=("fail",)).to_json()
    outcome = await runtime.run(bw.read, {"key": "k", "budget": budget}, run_id="r")
    assert outcome.status == "failed"
    assert outcome.error["type"].endswith("BudgetExceededError")
    assert "context_tokens" in outcome.error["message"]
    assert max(sizes("k")) <= 150  # every request sent was within the budget
    [taken] = of_type(await journal(runtime, "r"), "BudgetActionTaken")
    assert taken.data["action"] == "fail" and taken.data["limit"] == "context_tokens"


async def test_compact_drops_the_oldest_turns_and_journals_it(runtime: phalanx.Runtime) -> None:
    """compact: the oldest turns go, the task stays, every request fits, decisions journaled."""
    budget = Budget(context_tokens=400, actions=("compact", "fail")).to_json()
    outcome = await runtime.run(bw.read, {"key": "k", "budget": budget}, run_id="r")
    assert outcome.status == "completed", outcome.error
    assert max(sizes("k")) <= 400
    last = bw.MODELS["k"].requests[-1]
    assert last.messages[1].content == "Read about leases."  # the task is never dropped
    taken = of_type(await journal(runtime, "r"), "BudgetActionTaken")
    assert taken and {e.data["action"] for e in taken} == {"compact"}
    assert all(e.data["tokens_after"] < e.data["tokens_before"] for e in taken)


async def test_summarize_replaces_old_turns_and_journals_what_it_replaced(
    runtime: phalanx.Runtime,
) -> None:
    """summarize: a summary replaces old turns; the summary and the replaced messages journaled."""
    budget = Budget(context_tokens=400, actions=("summarize", "fail")).to_json()
    outcome = await runtime.run(bw.read, {"key": "k", "budget": budget}, run_id="r")
    assert outcome.status == "completed", outcome.error
    assert max(sizes("k")) <= 400
    events = await journal(runtime, "r")
    summaries = of_type(events, "ContextSummarized")
    assert summaries
    first = summaries[0].data
    assert first["summary"] == "Pages 1+ say: leases fence."
    replaced = [m["content"] for m in first["replaced"] if m["role"] == "tool"]
    assert replaced and replaced[0].startswith("page 1:")
    later = bw.MODELS["k"].requests[-1]
    assert any("Summary of the earlier conversation" in (m.content or "") for m in later.messages)


async def test_a_resumed_run_replays_its_summary_without_calling_the_model(
    runtime: phalanx.Runtime,
) -> None:
    """Stopped after summarising, then resumed: the summary is replayed, never asked again."""
    budget = Budget(context_tokens=400, actions=("summarize", "fail")).to_json()
    inputs = {"key": "k", "budget": budget, "delay_after": 4}
    task = asyncio.create_task(runtime.run(bw.read, inputs, run_id="r"))
    await reached(runtime, "r", "ContextSummarized")
    task.cancel()  # the runner stops mid-call and hands its lease back
    with pytest.raises(asyncio.CancelledError):
        await task
    before = bw.MODELS.pop("k").requests
    assert any(summarising(r) for r in before)
    outcome = await runtime.resume("r")
    assert outcome.status == "completed", outcome.error
    again = bw.MODELS["k"].requests
    assert again and not any(summarising(r) for r in again)
    assert len(of_type(await journal(runtime, "r"), "ContextSummarized")) >= 1


async def test_final_answer_gives_a_graceful_answer_without_tools(
    runtime: phalanx.Runtime,
) -> None:
    """final_answer: the last request has no tools and asks for the answer; the run completes."""
    budget = Budget(context_tokens=250, actions=("final_answer", "fail")).to_json()
    outcome = await runtime.run(bw.read, {"key": "k", "budget": budget}, run_id="r")
    assert outcome.status == "completed", outcome.error
    last = bw.MODELS["k"].requests[-1]
    assert last.tools == () and "final answer" in (last.messages[-1].content or "")
    assert max(sizes("k")) <= 250


async def test_a_run_budget_is_shared_by_every_agent_of_the_run(
    runtime: phalanx.Runtime,
) -> None:
    """Two agents, one run budget: the second is refused what the first used up."""
    first_alone = await runtime.run(bw.read, {"key": "probe", "turns": 1}, run_id="probe")
    used = first_alone.result["usage"]["input_tokens"]
    run_budget = Budget(input_tokens=used + 50).to_json()
    outcome = await runtime.run(bw.two_readers, {"key": "k", "run_budget": run_budget}, run_id="r")
    assert outcome.status == "completed", outcome.error
    assert outcome.result["first"]["input_tokens"] == used
    assert "input_tokens" in outcome.result["refused"]


async def test_fan_out_shares_never_exceed_what_the_parent_has_left(
    runtime: phalanx.Runtime,
) -> None:
    """split reserves shares (child ≤ parent's remaining); a child over its share is refused."""
    run_budget = Budget(input_tokens=400, actions=("fail",)).to_json()
    inputs = {"key": "k", "run_budget": run_budget, "keep": 0.5}
    outcome = await runtime.run(bw.fan_out_budget, inputs, run_id="r")
    assert outcome.status == "completed", outcome.error
    shares = outcome.result["shares"]
    assert shares["left"]["input_tokens"] == 100 and shares["right"]["input_tokens"] == 100
    for branch in outcome.result["branches"].values():
        assert branch["share"]["input_tokens"] == 100
        assert "input_tokens" in branch["refused"]  # a one-page read needs more than 100
    assert outcome.result["left_after"] == 400  # nothing used, every share released


async def test_a_cost_budget_needs_prices_and_stops_spending(runtime: phalanx.Runtime) -> None:
    """With prices, a cost budget refuses the call it cannot pay for."""
    budget = Budget(cost=100.0, prices=bw.PRICED).to_json()
    outcome = await runtime.run(bw.read, {"key": "k", "budget": budget}, run_id="r")
    assert outcome.status == "failed" and "cost" in outcome.error["message"]


async def test_a_payload_over_the_limit_is_refused_at_the_sender(
    runtime: phalanx.Runtime,
) -> None:
    """An oversized report is refused (never truncated) and the refusal journaled once."""
    outcome = await runtime.run(
        bw.send_report, {"report": bw.PAGE * 4, "max_tokens": 100}, run_id="big"
    )
    assert outcome.result["sent"] is False and outcome.result["size"] > 100
    assert "not sent" in outcome.result["error"]
    [rejected] = of_type(await journal(runtime, "big"), "PayloadRejected")
    assert rejected.data["sender"] == "chatty" and rejected.data["unit"] == "tokens"
    small = await runtime.run(bw.send_report, {"report": "ok", "max_tokens": 100}, run_id="ok")
    assert small.result == {"sent": True}
    assert of_type(await journal(runtime, "ok"), "PayloadRejected") == []


@pytest.mark.parametrize(
    ("make", "setting"),
    [
        (lambda: Budget(input_tokens=0), "Budget.input_tokens"),
        (lambda: Budget(output_tokens=-5), "Budget.output_tokens"),
        (lambda: Budget(context_tokens=0), "Budget.context_tokens"),
        (lambda: Budget(cost=1.0), "Budget.cost"),
        (lambda: Budget(actions=("panic",)), "Budget.actions"),  # type: ignore[arg-type]
        (lambda: Budget(actions=()), "Budget.actions"),
        (lambda: PayloadLimit(max_bytes=0), "PayloadLimit.max_bytes"),
        (lambda: PayloadLimit(), "PayloadLimit"),
    ],
)
def test_bad_budgets_are_refused_with_a_config_error(make: Any, setting: str) -> None:
    """A budget of 0 or less, cost without prices, unknown actions: ConfigError naming it."""
    with pytest.raises(phalanx.ConfigError, match=setting):
        make()


def test_a_child_share_is_cut_to_the_parent_remaining_and_settles_back() -> None:
    """reserve: never more than is left; settle releases the share and charges the use."""
    parent = BudgetLedger(budget=Budget(input_tokens=1000, cost=1.0, prices=Prices(
        input_per_mtok=100.0, output_per_mtok=100.0)), scope="run")  # fmt: skip
    parent.charge(Usage(input_tokens=700))
    share = parent.reserve("child", Budget(input_tokens=5000))
    assert share.input_tokens == 300
    assert parent.left("input_tokens") == 0  # the share is held for the child
    parent.settle("child", Usage(input_tokens=120))
    assert parent.left("input_tokens") == 180
    child = BudgetLedger(budget=Budget(input_tokens=10_000), scope="agent", parent=parent)
    assert child.left("input_tokens") == 180  # an agent never gets more than the run has


async def test_an_actor_message_over_its_limit_never_reaches_the_mailbox(
    runtime: phalanx.Runtime,
) -> None:
    """tell(limit=...) refuses a large body at the sender: the mailbox stays empty."""
    from phalanx.actors import depth

    inputs = {"to": "boss", "report": bw.PAGE * 3, "max_bytes": 500}
    outcome = await runtime.run(bw.tell_report, inputs, run_id="t")
    assert outcome.result == {"sent": False, "unit": "bytes"}
    assert (await depth(runtime.store, "boss"))[0] == 0
    assert of_type(await journal(runtime, "t"), "PayloadRejected")
    fits = {"to": "boss", "report": "short", "max_bytes": 500}
    assert (await runtime.run(bw.tell_report, fits, run_id="t2")).result == {"sent": True}
    assert (await depth(runtime.store, "boss"))[0] == 1
