"""Actors and an event log shared by the actor tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from phalanx.actors import Actor, ActorEvent


class EventLog:
    """An `on_event` hook that records events and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[ActorEvent] = []
        self._changed = asyncio.Event()

    def __call__(self, event: ActorEvent) -> None:
        self.events.append(event)
        self._changed.set()

    def find(self, kind: str, path: str | None = None, **fields: Any) -> list[ActorEvent]:
        return [
            e
            for e in self.events
            if e.kind == kind
            and (path is None or e.path == path)
            and all(getattr(e, k) == v for k, v in fields.items())
        ]

    async def wait_for(self, kind: str, path: str | None = None, **fields: Any) -> ActorEvent:
        while True:
            found = self.find(kind, path, **fields)
            if found:
                return found[0]
            self._changed.clear()
            await self._changed.wait()

    def kinds(self, path: str) -> list[str]:
        return [e.kind for e in self.events if e.path == path]


class Echo(Actor):
    """Answers every message with itself."""

    async def receive(self, message: Any) -> Any:
        return message


class Recorder(Actor):
    """Records what it received in a shared list; fails on "fail"; blocks on a gate."""

    def __init__(self, seen: list[Any], gate: asyncio.Event | None = None) -> None:
        self.seen = seen
        self.gate = gate

    async def receive(self, message: Any) -> Any:
        self.seen.append(message)
        if message == "fail":
            raise ValueError("asked to fail")
        if message == "wait" and self.gate is not None:
            await self.gate.wait()
        return len(self.seen)


class Hang(Actor):
    """Never finishes a message."""

    async def receive(self, message: Any) -> Any:
        await asyncio.Event().wait()


class Worker(Actor):
    """Counts messages in its own state (fresh after a restart); fails on "fail"."""

    def __init__(self) -> None:
        self.count = 0

    async def receive(self, message: Any) -> Any:
        if message == "fail":
            raise ValueError("asked to fail")
        self.count += 1
        return self.count


class Tree(Actor):
    """Spawns `children` (names -> factories) in `on_start`; answers with their refs."""

    def __init__(self, children: Mapping[str, Callable[[], Actor]], **spawn: Any) -> None:
        self.children_spec = children
        self.spawn_options = spawn
        self.refs: dict[str, Any] = {}

    async def on_start(self) -> None:
        for name, factory in self.children_spec.items():
            self.refs[name] = await self.spawn(factory, name=name, **self.spawn_options)

    async def receive(self, message: Any) -> Any:
        if message == "fail":
            raise ValueError("asked to fail")
        return dict(self.refs)


async def settle(rounds: int = 20) -> None:
    """Let every ready task run a few steps (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def caught(awaitable: Awaitable[Any]) -> Any:
    """The awaitable's result, or the exception it raised (for tasks in a TaskGroup)."""
    try:
        return await awaitable
    except Exception as error:
        return error
