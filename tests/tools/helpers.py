"""Small helpers shared by the tool-reliability tests."""

from __future__ import annotations

import asyncio
from typing import Any

import phalanx


def of_type(events: list[phalanx.Event], event_type: str, name: str | None = None) -> list[Any]:
    """The events of one type (and step name, if given)."""
    return [
        e for e in events if e.type == event_type and (name is None or e.data.get("name") == name)
    ]


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
