"""Sagas and workflows the saga tests run, over an external ledger file.

They live at module level because runs journal their workflow's `module:qualname` and
`resume` imports it again. Every action and compensation writes a JSON line to the
ledger file named in the inputs (fsynced, so a SIGKILL loses nothing it wrote): the
ledger is the outside world the saga changes, and it deduplicates compensations by
their idempotency key, as a real target would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import phalanx
from phalanx import ForwardRecovery, RetryPolicy, Saga, SagaState, SagaStep, ToolFailed
from phalanx.patterns import Choreography

NAMES = ("a", "b", "c", "d")

#: Compensations retry fast in tests.
FAST = RetryPolicy(max_attempts=3, initial_interval=0.01, max_interval=0.02, jitter=0.0)


def write(ledger: str, entry: dict[str, Any]) -> None:
    """Append one line to the ledger and fsync it."""
    with open(ledger, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read(ledger: str | Path) -> list[dict[str, Any]]:
    """Every line of the ledger."""
    path = Path(ledger)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def effects(ledger: str | Path) -> list[str]:
    """What the ledger holds once deduplicated by key: `do:NAME` and `undo:NAME`."""
    seen: set[str] = set()
    out: list[str] = []
    for entry in read(ledger):
        if "do" in entry:
            out.append(f"do:{entry['do']}")
        elif "undo" in entry and entry["key"] not in seen:
            seen.add(entry["key"])
            out.append(f"undo:{entry['undo']}")
    return out


def action(name: str) -> Any:
    """A step's action: fail where the inputs say, else record `do` in the ledger."""

    def act(state: SagaState) -> dict[str, Any]:
        inputs = state.inputs
        if inputs.get("fail") == name:
            failures = sum(1 for e in read(inputs["ledger"]) if e.get("failed") == name)
            if failures < int(inputs.get("fail_times", 10**6)):
                write(inputs["ledger"], {"failed": name})
                raise ValueError(f"step {name} failed")
        if inputs.get("slow") == name:
            write(inputs["ledger"], {"started": name})
            time.sleep(1.0)
        write(inputs["ledger"], {"do": name, "revised": state.failure is not None})
        return {"step": name, "ledger": inputs["ledger"], "undo": inputs.get("undo", {}).get(name)}

    return act


def compensation(name: str) -> Any:
    """A step's compensation: record `undo` with its key, failing as the result says."""

    def undo(result: dict[str, Any] | None, idempotency_key: str) -> str:
        assert result is not None
        ledger, mode = result["ledger"], result.get("undo")
        if mode == "non_retryable":
            raise ToolFailed(f"cannot undo {name}", retryable=False)
        if mode == "slow":
            write(ledger, {"undo_started": name})
            time.sleep(0.5)
        if mode == "always":
            write(ledger, {"undo_failed": name})
            raise RuntimeError(f"undo {name} keeps failing")
        if isinstance(mode, int):
            tries = sum(1 for e in read(ledger) if e.get("undo_failed") == name)
            if tries < mode:
                write(ledger, {"undo_failed": name})
                raise RuntimeError(f"undo {name} failed (try {tries + 1})")
        write(ledger, {"undo": name, "key": idempotency_key})
        return f"undid {name}"

    return undo


def steps(**options: Any) -> list[SagaStep]:
    """The four steps, with the same options each."""
    return [
        SagaStep(n, action(n), compensation=compensation(n), compensation_retry=FAST, **options)
        for n in NAMES
    ]


PIPELINE = Saga("pipeline", steps())
CONTINUING = Saga("continuing", steps(), on_compensation_failure="continue")
PARALLEL = Saga("parallel", steps(), compensation_order="parallel")
RECOVERING = Saga(
    "recovering",
    [
        dataclasses.replace(s, recover=ForwardRecovery(rerun="b", max_rounds=2))
        if s.name == "c"
        else s
        for s in steps()
    ],
)


def hanging_compensation(name: str) -> Any:
    """`compensation(name)`, except that it hangs for good when the result says "hang"."""
    undo_now = compensation(name)

    async def undo(result: dict[str, Any] | None, idempotency_key: str) -> str:
        if result is not None and result.get("undo") == "hang":
            write(result["ledger"], {"undo_hung": name})
            await asyncio.Event().wait()
        return str(undo_now(result, idempotency_key))

    return undo


def timed_steps() -> list[SagaStep]:
    """The four steps, each compensation attempt bounded to 0.3 s."""
    return [
        SagaStep(
            n,
            action(n),
            compensation=hanging_compensation(n),
            compensation_retry=FAST,
            compensation_timeout=0.3,
        )
        for n in NAMES
    ]


TIMED = Saga("timed", timed_steps())
SAGAS = {s.name: s for s in (PIPELINE, CONTINUING, PARALLEL, RECOVERING, TIMED)}


@phalanx.workflow
async def run_saga(
    ctx: phalanx.WorkflowContext,
    saga: str,
    ledger: str,
    fail: str | None = None,
    fail_times: int | None = None,
    undo: dict[str, Any] | None = None,
    slow: str | None = None,
) -> dict[str, Any]:
    """Run the named saga with these inputs; return its result as JSON."""
    inputs = {"ledger": ledger, "fail": fail, "undo": undo or {}, "slow": slow}
    if fail_times is not None:
        inputs["fail_times"] = fail_times
    return (await SAGAS[saga].run(ctx, inputs)).to_json()


#: The same four steps, choreographed: a participant per step.
CHOREOGRAPHY = Choreography("relay", steps())
#: The bounded, possibly hanging compensations, choreographed.
TIMED_CHOREOGRAPHY = Choreography("timed_relay", timed_steps())


@phalanx.workflow
async def run_choreography(
    ctx: phalanx.WorkflowContext,
    ledger: str,
    fail: str | None = None,
    slow: str | None = None,
) -> dict[str, Any]:
    """Start the choreographed saga and keep its journal in this run."""
    inputs = {"ledger": ledger, "fail": fail, "undo": {}, "slow": slow}
    return (await CHOREOGRAPHY.run(ctx, inputs)).to_json()


@phalanx.workflow
async def run_timed_choreography(
    ctx: phalanx.WorkflowContext, ledger: str, fail: str, undo: dict[str, Any]
) -> dict[str, Any]:
    """Start the timed choreography and keep its journal in this run."""
    inputs = {"ledger": ledger, "fail": fail, "undo": undo, "slow": None}
    return (await TIMED_CHOREOGRAPHY.run(ctx, inputs)).to_json()
