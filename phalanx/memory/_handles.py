"""The three handles, one per consistency model; each enforces the model it names.

- `Linearizable`: reads catch the projection up to the stream's head first, so they
  see every write acknowledged before they began; writes are compare-and-set through
  the manager (`cas`), or a blind last-writer-wins `put` (still versioned, still
  through the manager, so its history shows what it overwrote).
- `Snapshot`: pinned at one memory position, taken before reading; every read is as
  of that position, so no write can tear what it sees. Read cost is a binary search
  in the key's versions, whatever the history's length.
- `Eventual`: reads the projection as it is, each read saying how stale it was.

Every operation's result is a JSON object run through the connection's recorder, so
inside a workflow it is journaled and a replay gets the recorded result (errors
included: a replayed conflict raises the same `MemoryConflictError`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .._errors import (
    MemoryConflictError,
    MemoryStaleError,
    MemoryVersionError,
    UnknownMemoryKeyError,
)
from ._projection import Staleness
from ._state import Author, Outcome, Version

if TYPE_CHECKING:
    from ._client import Memory

Model = Literal["linearizable", "snapshot", "eventual"]

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Read:
    """A value read from memory: its version, the memory position it reflects, how stale."""

    key: str
    value: Any
    version: int
    position: int
    model: Model
    author: Author
    staleness: Staleness | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form (journaled in a workflow, returned by the read tool)."""
        return {
            "key": self.key,
            "value": self.value,
            "version": self.version,
            "position": self.position,
            "model": self.model,
            "author": self.author.to_json(),
            "staleness": None if self.staleness is None else self.staleness.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Read:
        """Rebuild from `to_json`."""
        stale = data.get("staleness")
        return cls(
            key=str(data["key"]),
            value=data["value"],
            version=int(data["version"]),
            position=int(data["position"]),
            model=data["model"],
            author=Author.from_json(data.get("author")),
            staleness=None
            if stale is None
            else Staleness(int(stale["positions"]), stale["seconds"]),
        )


@dataclass(frozen=True, slots=True)
class Written:
    """An acknowledged write: the key's new version and the memory position it took."""

    key: str
    version: int
    position: int


def _read_result(version: Version | None, key: str, position: int, model: Model) -> dict[str, Any]:
    if version is None:
        return {"error": "unknown_key", "key": key}
    read = Read(key, version.value, version.version, position, model, version.author)
    return {"read": read.to_json()}


def _raise_unknown(memory: Memory, result: dict[str, Any]) -> None:
    if result.get("error") == "unknown_key":
        raise UnknownMemoryKeyError(memory=memory.name, key=str(result["key"]))


class Linearizable:
    """Reads that see every acknowledged write; compare-and-set writes through the manager."""

    model: Model = "linearizable"

    def __init__(self, memory: Memory) -> None:
        self.memory = memory

    async def read(self, key: str) -> Read:
        """The key's latest value and version.

        Raises:
            UnknownMemoryKeyError: the memory never held `key`.
        """

        async def perform(_: str | None) -> dict[str, Any]:
            position = await self.memory.projection.catch_up()
            return _read_result(self.memory.projection.state.at(key), key, position, self.model)

        result = await self.memory.recorder(
            "memory_read", f"{self.memory.name}/{key}", "MemoryRead", perform
        )
        _raise_unknown(self.memory, result)
        return Read.from_json(result["read"])

    async def keys(self) -> list[str]:
        """Every key the memory holds, sorted."""

        async def perform(_: str | None) -> dict[str, Any]:
            await self.memory.projection.catch_up()
            return {"keys": self.memory.projection.state.keys_at()}

        result = await self.memory.recorder("memory_keys", self.memory.name, "MemoryRead", perform)
        return list(result["keys"])

    async def history(self, key: str) -> list[Version]:
        """Every version of `key`, oldest first: who wrote it, based on which version.

        Raises:
            UnknownMemoryKeyError: the memory never held `key`.
        """
        memory = self.memory

        async def perform(_: str | None) -> dict[str, Any]:
            await memory.projection.catch_up()
            versions = memory.projection.state.versions.get(key)
            if not versions:
                return {"error": "unknown_key", "key": key}
            return {"versions": [v.to_json() for v in versions]}

        result = await memory.recorder(
            "memory_history", f"{memory.name}/{key}", "MemoryHistoryRead", perform
        )
        _raise_unknown(memory, result)
        return [Version.from_json(v) for v in result["versions"]]

    async def cas(self, key: str, value: Any, *, based_on: int) -> Written:
        """Write `value` if `key` is still at version `based_on` (0: create it).

        Raises:
            MemoryConflictError: the key moved on; carries its current version and value.
            MemoryVersionError: `key` never had version `based_on`.
            EventDataError: `value` is not JSON or is above the payload limit.
            MemoryUnavailableError: no manager answered in time.
        """
        return await self._write("cas", key, value, based_on)

    async def put(self, key: str, value: Any) -> Written:
        """Write `value` whatever the key holds now: last writer wins (history keeps both).

        For values nobody else updates; to add to a shared value use `update` or `cas`,
        or concurrent writers lose each other's changes.
        """
        return await self._write("put", key, value, 0)

    async def update(
        self,
        key: str,
        fn: Callable[[Any], Any],
        *,
        default: Any = _MISSING,
        max_attempts: int = 10,
    ) -> Written:
        """Apply the pure function `fn` to the key's value with compare-and-set, retrying.

        Reads the value, writes `fn(value)` based on the version read, and on a
        conflict applies `fn` again to the current value the conflict carries (each
        conflict is journaled), at most `max_attempts` times. `default` is the value
        of a key that does not exist yet (it is then created).

        Raises:
            MemoryConflictError: still conflicting after `max_attempts` tries.
            UnknownMemoryKeyError: `key` does not exist and no `default` was given.
        """
        try:
            seen = await self.read(key)
            value, version = seen.value, seen.version
        except UnknownMemoryKeyError:
            if default is _MISSING:
                raise
            value, version = default, 0
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self.cas(key, fn(value), based_on=version)
            except MemoryConflictError as conflict:
                if attempts >= max_attempts:
                    raise
                value, version = conflict.current_value, conflict.current_version

    async def _write(self, mode: str, key: str, value: Any, based_on: int) -> Written:
        memory = self.memory

        async def perform(request_id: str | None) -> dict[str, Any]:
            outcome = await memory.send(
                request_id, "put" if mode == "put" else "cas", key, value, based_on
            )
            return await outcome_result(memory, outcome)

        result = await memory.recorder(
            "memory_write", f"{memory.name}/{key}", "MemoryWriteAnswered", perform
        )
        return settle(memory, key, result)


def settle(memory: Memory, key: str, result: dict[str, Any]) -> Written:
    """The acknowledged write a write's JSON result records, or the error it records.

    Raises:
        MemoryConflictError: the result is a conflict (with the current value).
        MemoryVersionError: the result is a refusal (a version that never existed).
    """
    kind = result["kind"]
    if kind == "conflict":
        raise MemoryConflictError(
            memory=memory.name,
            key=key,
            based_on=int(result["based_on"]),
            current_version=int(result["version"]),
            current_value=result.get("current_value"),
        )
    if kind == "refused":
        raise MemoryVersionError(
            memory=memory.name,
            key=key,
            based_on=int(result["based_on"]),
            current_version=int(result["version"]),
        )
    return Written(key, int(result["version"]), int(result["position"]))


async def outcome_result(memory: Memory, outcome: Outcome) -> dict[str, Any]:
    """An outcome as the JSON result journaled; a conflict carries the current value."""
    result: dict[str, Any] = {
        "kind": outcome.kind,
        "version": outcome.version,
        "based_on": outcome.based_on,
        "position": outcome.position,
    }
    if outcome.kind == "conflict":
        await memory.projection.catch_up(to=outcome.position)
        current = memory.projection.state.at(outcome.key, outcome.position)
        result["current_value"] = None if current is None else current.value
    return result


class Snapshot:
    """The whole memory as of one position: reads see nothing newer, never a torn state."""

    model: Model = "snapshot"

    def __init__(self, memory: Memory, position: int) -> None:
        self.memory = memory
        self.position = position

    async def read(self, key: str) -> Read:
        """The key's value as of the snapshot's position.

        Raises:
            UnknownMemoryKeyError: the memory did not hold `key` at that position.
        """
        memory, position = self.memory, self.position

        async def perform(_: str | None) -> dict[str, Any]:
            await memory.projection.catch_up(to=position)
            return _read_result(
                memory.projection.state.at(key, position), key, position, self.model
            )

        result = await memory.recorder("memory_read", f"{memory.name}/{key}", "MemoryRead", perform)
        _raise_unknown(memory, result)
        return Read.from_json(result["read"])

    async def keys(self) -> list[str]:
        """Every key the memory held at the snapshot's position, sorted."""
        memory, position = self.memory, self.position

        async def perform(_: str | None) -> dict[str, Any]:
            await memory.projection.catch_up(to=position)
            return {"keys": memory.projection.state.keys_at(position)}

        result = await memory.recorder("memory_keys", memory.name, "MemoryRead", perform)
        return list(result["keys"])


class Eventual:
    """Reads of this process's projection as it is, each with how stale it was."""

    model: Model = "eventual"

    def __init__(
        self,
        memory: Memory,
        *,
        max_positions: int | None,
        max_seconds: float | None,
        wait: float,
        refresh_after: float | None,
    ) -> None:
        self.memory = memory
        self.max_positions = max_positions
        self.max_seconds = max_seconds
        self.wait = wait
        self.refresh_after = refresh_after

    def _within(self, staleness: Staleness) -> bool:
        return (self.max_positions is None or staleness.positions <= self.max_positions) and (
            self.max_seconds is None or staleness.seconds <= self.max_seconds
        )

    async def read(self, key: str) -> Read:
        """The key's value in the projection, and how far behind the head that was.

        Past the bound, catches the projection up for at most `wait` seconds.

        Raises:
            MemoryStaleError: still past the bound after `wait` seconds.
            UnknownMemoryKeyError: the projection holds no `key`.
        """
        memory = self.memory
        clock = memory.clock

        async def perform(_: str | None) -> dict[str, Any]:
            projection = memory.projection
            staleness = await projection.staleness()
            started = clock.monotonic()
            if self.refresh_after is not None and staleness.seconds > self.refresh_after:
                await projection.catch_up()  # behind for long enough: converge
                staleness = await projection.staleness()
            if not self._within(staleness) and self.wait > 0:
                try:
                    async with asyncio.timeout(self.wait):
                        await projection.catch_up()
                except TimeoutError:
                    pass
                staleness = await projection.staleness()
            if not self._within(staleness):
                return {
                    "error": "stale",
                    "positions": staleness.positions,
                    "seconds": staleness.seconds,
                    "waited": clock.monotonic() - started,
                }
            result = _read_result(
                projection.state.at(key), key, projection.state.position, self.model
            )
            if "read" in result:
                result["read"]["staleness"] = staleness.to_json()
            return result

        result = await memory.recorder("memory_read", f"{memory.name}/{key}", "MemoryRead", perform)
        if result.get("error") == "stale":
            raise MemoryStaleError(
                memory=memory.name,
                behind_positions=int(result["positions"]),
                behind_seconds=float(result["seconds"]),
                max_positions=self.max_positions,
                max_seconds=self.max_seconds,
                waited=float(result["waited"]),
            )
        _raise_unknown(memory, result)
        return Read.from_json(result["read"])
