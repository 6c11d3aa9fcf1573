"""A memory's state: the pure fold of its stream, keeping every version of every key.

A memory named `plan` lives in two streams:

- `memory:plan`, written only by the memory's manager under its lease epoch. Its
  events, in order, are the memory (the stream's seq is the memory's *position*):

  - `MemoryWritten`: `key`, `value`, `version` (the key's new version, from 1),
    `based_on` (the version the writer read; for a blind `put`, the one it replaced),
    `mode` (`cas` or `put`), `author` (`agent`, `run`), `request` (the request id),
    and `request_seq` when the request came through the request stream.
  - `MemoryConflict`: a compare-and-set refused because `key` had moved on:
    `based_on`, `current_version`, `author`, `request` (and `request_seq`).
  - `MemoryRefused`: a request that could never succeed (a version that never
    existed): `key`, `based_on`, `current_version`, `reason`, `request`.

- `memory-requests:plan`, where anyone appends `MemoryRequested` (`request`, `mode`,
  `key`, `value`, `based_on`, `author`) for the manager to answer in the memory stream.

Every outcome names its request id, so a request sent twice (a crash between sending
and hearing the answer) is answered once: the manager finds the id among the outcomes
and writes nothing more. Versions are kept in position order per key, so reading a
key as of any position (a snapshot) is a binary search, whatever the history's size.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Literal

from ..journal import Event

#: The events of a memory stream (see the module docstring).
WRITTEN, CONFLICT, REFUSED = "MemoryWritten", "MemoryConflict", "MemoryRefused"
#: The event a request stream holds.
REQUESTED = "MemoryRequested"

Mode = Literal["cas", "put"]


def memory_stream(name: str) -> str:
    """The stream holding memory `name`'s writes and refusals (written by its manager)."""
    return f"memory:{name}"


def request_stream(name: str) -> str:
    """The stream where anyone asks memory `name`'s manager to write."""
    return f"memory-requests:{name}"


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote: the agent (a name) and the run it wrote from (either may be None)."""

    agent: str | None = None
    run: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form journaled with every write."""
        return {"agent": self.agent, "run": self.run}

    @classmethod
    def from_json(cls, data: Any) -> Author:
        """Rebuild from `to_json` (tolerating a missing or partial object)."""
        data = data if isinstance(data, dict) else {}
        return cls(agent=data.get("agent"), run=data.get("run"))


@dataclass(frozen=True, slots=True)
class Version:
    """One version of one key: its value, who wrote it, based on what, and where."""

    key: str
    version: int
    value: Any
    based_on: int
    mode: Mode
    author: Author
    position: int
    recorded_at: float

    def to_json(self) -> dict[str, Any]:
        """The JSON form (journaled when a workflow reads a key's history)."""
        return {
            "key": self.key,
            "version": self.version,
            "value": self.value,
            "based_on": self.based_on,
            "mode": self.mode,
            "author": self.author.to_json(),
            "position": self.position,
            "recorded_at": self.recorded_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Version:
        """Rebuild from `to_json`."""
        return cls(
            key=str(data["key"]),
            version=int(data["version"]),
            value=data["value"],
            based_on=int(data["based_on"]),
            mode="put" if data.get("mode") == "put" else "cas",
            author=Author.from_json(data.get("author")),
            position=int(data["position"]),
            recorded_at=float(data["recorded_at"]),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the manager answered one request: written, conflict or refused."""

    request: str
    kind: Literal["written", "conflict", "refused"]
    key: str
    based_on: int
    #: The key's version after the request: the new one if written, else the current.
    version: int
    position: int
    reason: str = ""

    @classmethod
    def of(cls, event: Event) -> Outcome:
        """The outcome an outcome event records."""
        data = event.data
        kind: Literal["written", "conflict", "refused"] = (
            "written"
            if event.type == WRITTEN
            else "conflict"
            if event.type == CONFLICT
            else "refused"
        )
        version = data["version"] if kind == "written" else data["current_version"]
        return cls(
            request=str(data["request"]),
            kind=kind,
            key=str(data["key"]),
            based_on=int(data["based_on"]),
            version=int(version),
            position=event.seq,
            reason=str(data.get("reason", "")),
        )


@dataclass
class MemoryState:
    """Memory folded from its stream up to `position`: every key's versions, every outcome."""

    name: str
    position: int = 0
    versions: dict[str, list[Version]] = field(default_factory=dict)
    #: Positions of each key's versions, for the binary search of `at`.
    _positions: dict[str, list[int]] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    #: The last request-stream seq answered: the manager resumes after it.
    request_cursor: int = 0
    writes: int = 0
    conflicts: int = 0

    def apply(self, event: Event) -> None:
        """Fold one event of the memory stream (in seq order) into the state."""
        if event.seq <= self.position:
            return  # already folded (a catch-up overlapping the previous one)
        self.position = event.seq
        if event.type not in (WRITTEN, CONFLICT, REFUSED):
            return
        data = event.data
        outcome = Outcome.of(event)
        self.outcomes[outcome.request] = outcome
        self.request_cursor = max(self.request_cursor, int(data.get("request_seq", 0)))
        if event.type == CONFLICT:
            self.conflicts += 1
        if event.type != WRITTEN:
            return
        self.writes += 1
        key = outcome.key
        self.versions.setdefault(key, []).append(
            Version(
                key=key,
                version=outcome.version,
                value=data["value"],
                based_on=outcome.based_on,
                mode="put" if data.get("mode") == "put" else "cas",
                author=Author.from_json(data.get("author")),
                position=event.seq,
                recorded_at=event.recorded_at,
            )
        )
        self._positions.setdefault(key, []).append(event.seq)

    def at(self, key: str, position: int | None = None) -> Version | None:
        """The key's version as of `position` (None: the latest), or None if it had none."""
        versions = self.versions.get(key)
        if not versions:
            return None
        if position is None or position >= versions[-1].position:
            return versions[-1]
        index = bisect.bisect_right(self._positions[key], position)
        return versions[index - 1] if index else None

    def version_of(self, key: str) -> int:
        """The key's latest version, 0 if it was never written."""
        latest = self.at(key)
        return 0 if latest is None else latest.version

    def keys_at(self, position: int | None = None) -> list[str]:
        """Every key that had a version as of `position` (None: now), sorted."""
        return sorted(k for k in self.versions if self.at(k, position) is not None)
