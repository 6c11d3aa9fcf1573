"""What the run page shows of a run's sagas, votes, evals and memories, and the memory page.

All folded from the journal through the patterns' public readers: `saga_views` (the
fold `phalanx show` prints), the vote events `phalanx.patterns.vote` journals in its
run's stream (`VoteStarted`, `DisagreementDetected`, `VoteDecided`, `VoteEscalated`,
`VoteResolved`), `recorded_evals` (the `evals:RUN` stream) and a memory's stream
(`memory:NAME`, folded by `MemoryState`). A run names a memory it used in its own
`Memory*` operation events (`data.name`), so only those runs link to a memory page.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..evals import recorded_evals
from ..journal import Event, EventStore
from ..memory import MemoryState, Version, memory_stream
from ..patterns import saga_views

#: Versions of one key shown per page of a memory (older ones are a link away).
VERSIONS_PER_PAGE = 20
_VOTE_EVENTS = frozenset(
    {"VoteStarted", "DisagreementDetected", "VoteDecided", "VoteEscalated", "VoteResolved"}
)
_MEMORY_OPS = frozenset(
    {"MemoryRead", "MemoryWriteAnswered", "MemorySnapshotPinned", "MemoryHistoryRead"}
)


def saga_sections(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Each saga of the run: status, steps' outcomes, compensation order, waiting entries."""
    return [view.to_json() for view in saga_views(events)]


def vote_sections(events: Iterable[Event]) -> list[dict[str, Any]]:
    """Each vote of the run (by op): replicas' votes, decision, agreement, escalation."""
    votes: dict[Any, dict[str, Any]] = {}
    for event in events:
        if event.type not in _VOTE_EVENTS:
            continue
        data = event.data
        vote = votes.setdefault(
            data.get("op"),
            {"name": data.get("name", ""), "escalation": None, "disagreement": False},
        )
        if event.type == "VoteStarted":
            vote["replicas"] = list(data.get("replicas") or [])
            vote["rule"] = data.get("rule")
        elif event.type == "DisagreementDetected":
            vote["disagreement"] = True
            vote.setdefault("votes", data.get("votes") or {})
        elif event.type == "VoteDecided":
            vote.update({k: v for k, v in data.items() if k not in ("op", "name")})
            if vote["escalation"] is None and data.get("decision") == "escalated":
                vote["escalation"] = {"state": "escalated", "reason": data.get("reason")}
        elif event.type == "VoteEscalated":
            vote["escalation"] = {
                "state": "waiting for a person",
                "signal": data.get("signal"),
                "reason": data.get("reason"),
                "how": data.get("how"),
            }
        else:  # VoteResolved
            vote["escalation"] = {
                **(vote["escalation"] or {}),
                "state": "resolved by a person",
                "by": data.get("by"),
                "answer": data.get("answer"),
            }
    return list(votes.values())


async def eval_sections(store: EventStore, run_id: str) -> list[dict[str, Any]]:
    """What eval runs recorded about the run (criteria, scores, pass/fail), oldest first."""
    return await recorded_evals(store, run_id)


def memories_used(events: Iterable[Event]) -> list[str]:
    """The memories the run read or wrote through `memory(ctx, ...)`, by name."""
    return sorted(
        {str(e.data["name"]) for e in events if e.type in _MEMORY_OPS and e.data.get("name")}
    )


@dataclass(frozen=True)
class KeyPage:
    """One key of a memory and one page of its versions (newest first), each with its diff."""

    key: str
    count: int
    versions: list[dict[str, Any]]
    older: int | None


@dataclass(frozen=True)
class MemoryPage:
    """A memory as its stream holds it: every key, a page of versions each."""

    name: str
    position: int
    writes: int
    conflicts: int
    keys: list[KeyPage]


def _text(value: Any) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _version_row(version: Version, previous: Version | None) -> dict[str, Any]:
    diff = list(
        difflib.unified_diff(
            _text(previous.value) if previous is not None else [],
            _text(version.value),
            f"v{previous.version}" if previous is not None else "(none)",
            f"v{version.version}",
            lineterm="",
        )
    )
    return {
        "version": version.version,
        "based_on": version.based_on,
        "mode": version.mode,
        "agent": version.author.agent,
        "run": version.author.run,
        "position": version.position,
        "value": version.value,
        "diff": diff,
    }


def _key_page(key: str, versions: list[Version], before: int | None) -> KeyPage:
    end = len(versions)
    if before is not None:
        end = next((i for i, v in enumerate(versions) if v.version >= before), end)
    start = max(0, end - VERSIONS_PER_PAGE)
    rows = [
        _version_row(versions[i], versions[i - 1] if i > 0 else None) for i in range(start, end)
    ]
    older = versions[start].version if start > 0 else None
    return KeyPage(key, len(versions), list(reversed(rows)), older)


async def memory_page(
    store: EventStore, name: str, *, key: str | None = None, before: int | None = None
) -> MemoryPage | None:
    """Memory `name` (None when its stream is empty): keys, versions, diffs.

    With `key`, only that key is shown; `before` pages back through its versions.
    """
    stream = memory_stream(name)
    if await store.stream_version(stream) == 0:
        return None
    state = MemoryState(name)
    for event in await store.read_stream(stream):
        state.apply(event)
    keys = sorted(state.versions) if key is None else [key] if key in state.versions else []
    return MemoryPage(
        name,
        state.position,
        state.writes,
        state.conflicts,
        [_key_page(k, state.versions[k], before if key is not None else None) for k in keys],
    )


__all__ = [
    "VERSIONS_PER_PAGE",
    "MemoryPage",
    "eval_sections",
    "memories_used",
    "memory_page",
    "saga_sections",
    "vote_sections",
]
