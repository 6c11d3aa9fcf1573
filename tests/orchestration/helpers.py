"""Small helpers shared by the orchestration tests."""

from __future__ import annotations

import contextlib
from typing import Any

import phalanx

TERMINAL = ("completed", "failed", "cancelled")


async def journal(runtime: phalanx.Runtime, run_id: str) -> list[phalanx.Event]:
    """Every event of the run's stream."""
    return (await runtime.history(run_id)).events


def of_type(events: list[phalanx.Event], event_type: str) -> list[Any]:
    """The events of one type."""
    return [e for e in events if e.type == event_type]


async def statuses(runtime: phalanx.Runtime) -> dict[str, str]:
    """Every run's status, by run id, as `runtime.runs()` (and `phalanx runs`) reports it."""
    return {r.run_id: r.status for r in await runtime.runs()}


async def assert_none_open(runtime: phalanx.Runtime) -> None:
    """No run at all is left `running` or `waiting`."""
    left = {r: s for r, s in (await statuses(runtime)).items() if s not in TERMINAL}
    assert left == {}, f"runs left unfinished: {left}"


def holds(error: BaseException, cls: type[BaseException]) -> bool:
    """Whether `error` is `cls` or an exception group holding one, at any depth."""
    if isinstance(error, cls):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(holds(inner, cls) for inner in error.exceptions)
    return False


async def reached(runtime: phalanx.Runtime, run_id: str, event_type: str, count: int = 1) -> Any:
    """Wait, by tailing the store, until the run has journaled `count` events of a type."""
    seen = 0
    stream = f"run:{run_id}"
    async with contextlib.aclosing(runtime.store.subscribe()) as events:
        async for event in events:
            if event.stream_id == stream and event.type == event_type:
                seen += 1
                if seen == count:
                    return event
    raise AssertionError("unreachable: a subscription never ends")
