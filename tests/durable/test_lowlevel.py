"""`phalanx.durable.lowlevel`: its documented example works, and the inbox wake-ups hold."""

from __future__ import annotations

import textwrap
from typing import Any

import phalanx
from phalanx import WorkflowContext
from phalanx.durable import lowlevel
from tests.conftest import StoreFactory


def _documented_race() -> Any:
    """The `race` pattern exactly as the module docstring shows it."""
    doc = lowlevel.__doc__ or ""
    code = doc.split('Example, a "race"', 1)[1].split("::\n", 1)[1]
    code = code.split("\nRules of the road", 1)[0]
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(code), namespace)
    return namespace["race"]


race = _documented_race()


@phalanx.workflow
async def quick(ctx: WorkflowContext) -> str:
    return str(await ctx.step("quick", lambda: "quick"))


@phalanx.workflow
async def sluggish(ctx: WorkflowContext) -> str:
    await ctx.sleep(60)
    return "sluggish"


@phalanx.workflow
async def racing(ctx: WorkflowContext) -> list[str]:
    winner, result = await race(ctx, "first", sluggish, quick)
    return [winner, result]


@phalanx.workflow
async def inbox_watcher(ctx: WorkflowContext) -> dict[str, Any]:
    seen = len(lowlevel.inbox(ctx))
    timed_out = await lowlevel.wait_inbox(ctx, 0.1)
    await lowlevel.post(ctx, ctx.run_id, "Ping", {"id": "p1"})
    woke = await lowlevel.wait_inbox(ctx, 30)
    pings = [e.data for e in lowlevel.inbox(ctx) if e.type == "Ping"]
    child = await lowlevel.run_child(ctx, f"{ctx.run_id}.kid", quick, {})
    woke_by_child = await lowlevel.wait_inbox(ctx, 0)
    return {
        "seen": seen,
        "timed_out": not timed_out,
        "woke": woke,
        "pings": pings,
        "child": child.status,
        "woke_by_child": woke_by_child,
    }


async def test_the_documented_race_pattern_runs(store_factory: StoreFactory) -> None:
    """The module docstring's example: the quick child wins, the other ends cancelled."""
    runtime = phalanx.Runtime(await store_factory(), lease_ttl=1.0, inbox_poll=0.02)
    outcome = await runtime.run(racing, run_id="r")
    assert outcome.result == ["right", "quick"]
    assert (await runtime.history("r.1.left")).status == "cancelled"
    events = (await runtime.history("r")).events
    opening = next(e for e in events if e.type == "RaceStarted")
    assert opening.data["op_kind"] == "race"
    assert [e.type for e in events][-2:] == ["RaceWon", "RunCompleted"]


async def test_wait_inbox_wakes_on_a_post_and_on_a_child_ending(
    store_factory: StoreFactory,
) -> None:
    """`wait_inbox` times out on nothing, wakes for a posted event and for a child's end."""
    runtime = phalanx.Runtime(await store_factory(), lease_ttl=1.0, inbox_poll=0.02)
    outcome = await runtime.run(inbox_watcher, run_id="w")
    assert outcome.result == {
        "seen": 0,
        "timed_out": True,
        "woke": True,
        "pings": [{"id": "p1"}],
        "child": "completed",
        "woke_by_child": True,
    }
