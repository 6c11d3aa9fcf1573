"""Small helpers shared by the durable tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

import pytest

import phalanx
from tests.durable.workflows import Crash


def _holds(error: BaseException, cls: type[BaseException]) -> bool:
    if isinstance(error, cls):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(_holds(inner, cls) for inner in error.exceptions)
    return False


async def crashes(awaitable: Awaitable[Any]) -> None:
    """Await a run that must die of a simulated `Crash` (bare or in an exception group)."""
    with pytest.raises(BaseException) as info:
        await awaitable
    assert _holds(info.value, Crash), f"expected a Crash, got {info.value!r}"


async def capture(awaitable: Awaitable[Any]) -> Any:
    """Await and return the result, or the `Exception` raised (for background tasks)."""
    try:
        return await awaitable
    except Exception as exc:
        return exc


async def journal(runtime: phalanx.Runtime, run_id: str) -> list[phalanx.Event]:
    """Every event of the run's stream."""
    return (await runtime.history(run_id)).events


def of_type(events: list[phalanx.Event], event_type: str, name: str | None = None) -> list[Any]:
    """The events of one type (and step name, if given)."""
    return [
        e for e in events if e.type == event_type and (name is None or e.data.get("name") == name)
    ]


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


async def status(runtime: phalanx.Runtime, run_id: str) -> str | None:
    """The run's status as `runtime.runs()` reports it (None if unknown)."""
    rows = {r.run_id: r for r in await runtime.runs()}
    return rows[run_id].status if run_id in rows else None


async def until_status(
    runtime: phalanx.Runtime, run_id: str, wanted: str, timeout: float = 20
) -> None:
    """Poll until the run has status `wanted`."""
    async with asyncio.timeout(timeout):
        while True:  # polling the store: another process may change the status
            if await status(runtime, run_id) == wanted:
                return
            await asyncio.sleep(0.02)
