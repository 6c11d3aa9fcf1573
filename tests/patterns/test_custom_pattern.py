"""A pattern phalanx has never heard of, written here with `lowlevel` alone, survives SIGKILL.

`batch` is defined in this module: an operation of kind `batch` with event types of its
own (`BatchOpened`, `ItemProcessed`, `BatchClosed`), none of which `phalanx.durable`
lists. A real process runs it and is SIGKILLed in the middle; `phalanx resume` finishes
it from the journal, redoing no item on record. Run as a script, this module is that
process (`python -m tests.patterns.test_custom_pattern URL RUN_ID INPUTS FAULTS`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

import phalanx
from phalanx import NonDeterminismError, WorkflowContext
from phalanx.durable import lowlevel
from tests.chaos.harness import wait_exit, workspace
from tests.conftest import StoreFactory

ITEMS = ["a", "b", "c", "d", "e"]


def _effect(ledger: str, key: str, item: str) -> str:
    """The outside world: one line per time an item is processed."""
    with open(ledger, "a", encoding="utf-8") as out:
        out.write(json.dumps({"item": item, "key": key, "pid": os.getpid()}) + "\n")
    return item.upper()


async def batch(ctx: WorkflowContext, name: str, items: list[str], ledger: str) -> list[str]:
    """Process `items` in order, journaling each result as this pattern's own event."""
    op, recorded = lowlevel.claim(ctx, "batch", name)
    done: dict[str, str] = {}
    if recorded is None:
        await lowlevel.record(ctx, "BatchOpened", {"op": op, "name": name, "items": items})
    else:
        if recorded.events[0].data["items"] != items:
            lowlevel.diverge(ctx, op, recorded.describe(), f"batch {name!r} over {items}")
        closed = recorded.last("BatchClosed")
        if closed is not None:
            return list(closed.data["results"])
        done = {e.data["item"]: e.data["result"] for e in recorded.events[1:]}
    for item in items:
        if item in done:
            continue  # on record: not done again
        result = _effect(ledger, f"{ctx.run_id}:{op}:{item}", item)
        await lowlevel.record(
            ctx, "ItemProcessed", {"op": op, "name": name, "item": item, "result": result}
        )
        done[item] = result
    results = [done[i] for i in items]
    await lowlevel.record(ctx, "BatchClosed", {"op": op, "name": name, "results": results})
    return results


@phalanx.workflow
async def batch_job(ctx: WorkflowContext, ledger: str, gate: str | None = None) -> dict[str, Any]:
    """A workflow using the pattern between two ordinary steps."""
    first = await ctx.step("before", lambda: "before")
    results = await batch(ctx, "letters", ITEMS, ledger)
    if gate is not None:
        await ctx.wait_for_signal(gate)
    return {"first": first, "results": results}


@phalanx.workflow
async def other_pattern_at_the_same_place(
    ctx: WorkflowContext, ledger: str, gate: str | None = None
) -> str:
    """Changed code: the same name at the same position, but another kind of operation."""
    await ctx.step("before", lambda: "before")
    lowlevel.claim(ctx, "relay", "letters")
    return "unreachable"


def _ledger(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


KILLS = {
    # The second item's result is journaled, then the process dies.
    "after-recorded-item": ({"kill_after_append": 2, "event_type": "ItemProcessed"}, None),
    # The third item's effect happened, its record never reached the journal.
    "before-recorded-item": ({"kill_before_append": 3, "event_type": "ItemProcessed"}, "c"),
}


@pytest.mark.slow
@pytest.mark.parametrize("kill", list(KILLS))
async def test_a_pattern_defined_in_a_test_resumes_after_sigkill(
    store_factory: StoreFactory, tmp_path: Path, kill: str
) -> None:
    """SIGKILLed mid-pattern, the run resumes and finishes without redoing recorded items."""
    faults, in_flight = KILLS[kill]
    ledger = tmp_path / "ledger.jsonl"
    with workspace(tmp_path, PHALANX_LEASE_TTL="1.0") as ws:
        ws.url = store_factory.url
        inputs = json.dumps({"ledger": str(ledger)})
        argv = [sys.executable, "-m", "tests.patterns.test_custom_pattern", ws.url, "job"]
        driver = ws.spawn(*argv, inputs, json.dumps(faults), label="driver")
        assert wait_exit(driver, 60) == -9, driver.describe()
        before = _ledger(ledger)
        assert [line["item"] for line in before] == ITEMS[: 2 if in_flight is None else 3]

        resumed = await asyncio.to_thread(ws.cli, "resume", "job", "--force", "--json")
        assert resumed.returncode == 0, resumed.stderr
        events = ws.events("job")

    assert json.loads(resumed.stdout)["result"] == {
        "first": "before",
        "results": [i.upper() for i in ITEMS],
    }
    processed = [line["item"] for line in _ledger(ledger)]
    twice = [] if in_flight is None else [in_flight]
    assert sorted(processed) == sorted(ITEMS + twice)  # recorded items were not redone
    keys = {line["key"] for line in _ledger(ledger) if line["item"] == in_flight}
    assert len(keys) <= 1  # the one in flight ran again under the same key
    opened = next(e for e in events if e["type"] == "BatchOpened")
    assert opened["data"]["op_kind"] == "batch"  # the opening event carries the kind
    items = [e["data"]["item"] for e in events if e["type"] == "ItemProcessed"]
    assert items == ITEMS
    assert all("op_kind" not in e["data"] for e in events if e["type"] == "ItemProcessed")
    assert [e["type"] for e in events][-2:] == ["BatchClosed", "RunCompleted"]


async def test_replay_checks_the_kind_recorded_in_the_opening_event(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    """Code that asks for another kind where the journal holds a `batch` is refused."""
    store = await store_factory()
    runtime = phalanx.Runtime(store, lease_ttl=1.0, inbox_poll=0.02)
    inputs = {"ledger": str(tmp_path / "ledger.jsonl"), "gate": "go"}
    task = asyncio.create_task(runtime.run(batch_job, inputs, run_id="job"))
    for _ in range(1500):  # up to 30 s
        if await _status(runtime) == "waiting":
            break
        await asyncio.sleep(0.02)
    assert await _status(runtime) == "waiting"
    task.cancel()  # cancelled from outside: the run stays resumable
    with pytest.raises(asyncio.CancelledError):
        await task
    history = await runtime.history("job")
    assert history.operations[2].kind == "batch"

    with pytest.raises(NonDeterminismError) as raised:
        await runtime.resume("job", force=True, workflow=other_pattern_at_the_same_place)
    assert "batch 'letters'" in str(raised.value)
    assert "relay 'letters'" in str(raised.value)

    # The right code resumes it: the batch is answered from the journal.
    await runtime.signal("job", "go")
    outcome = await runtime.resume("job", force=True)
    assert outcome.result == {"first": "before", "results": [i.upper() for i in ITEMS]}
    assert len(_ledger(tmp_path / "ledger.jsonl")) == len(ITEMS)


async def _status(runtime: phalanx.Runtime) -> str | None:
    try:
        return (await runtime.history("job")).status
    except phalanx.UnknownRunError:
        return None


async def _main(url: str, run_id: str, inputs: dict[str, Any], faults: dict[str, Any]) -> int:
    from phalanx import Runtime, store_from_url
    from phalanx.testing import FaultyStore
    from tests.patterns.test_custom_pattern import batch_job as job  # importable by resume

    store = FaultyStore(store_from_url(url), **faults)
    async with store:
        runtime = Runtime(store, lease_ttl=float(os.environ.get("PHALANX_LEASE_TTL", "1.0")))
        outcome = await runtime.run(job, inputs, run_id=run_id)
    print(json.dumps(outcome.to_json()), flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    url, run_id, inputs, faults = sys.argv[1:5]
    sys.exit(asyncio.run(_main(url, run_id, json.loads(inputs), json.loads(faults))))
