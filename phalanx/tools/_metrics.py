"""Per-tool metrics, derived from the journal: the same figures for every process.

Nothing is written on a call's hot path for metrics. What a call does is already
journaled (its step's attempts, its dead-letter entry, its breaker's state changes),
so `tool_stats` folds those events from the store's global log, from the last
checkpoint on, and saves the fold as a snapshot for the next reader: each event is
read once, whichever process wrote it. Per tool:

- `calls` (ended: `successes` + `failures`), `retried_calls` (succeeded after a retry);
- `attempt_failures` by the tool's error type, `retries` (failed attempts retried),
  `rejected` (attempts the open breaker refused);
- `latency_s`: attempt durations as an exponential histogram, p50 / p95 / p99;
- `breaker`: its last state and the count of each transition;
- `dead_lettered` (entries made), `dlq_depth` (entries still open).

Exporting them as OpenTelemetry metrics is a mapping, not a redesign: the counters
are monotonic sums (`phalanx.tool.calls` by `outcome`, `phalanx.tool.attempt.failures`
by `error.type`, `phalanx.tool.retries`, `phalanx.tool.rejections`,
`phalanx.tool.breaker.transitions` by `state`), `dlq_depth` is a gauge, and the
latency histogram is kept in OpenTelemetry's own exponential-histogram layout (scale
3: bucket `i` holds values in `(2**(i/8), 2**((i+1)/8)]`), which `histogram` gives
as-is. Percentiles read from it are within 9% of the true value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..journal import Event, EventStore
from ._report import completed_tool, failed_tool

#: Where the fold is checkpointed (a snapshot key; no events are written there).
STATS_CHECKPOINT = "tools:stats"

#: OpenTelemetry exponential-histogram scale: 2**SCALE buckets per doubling.
SCALE = 3
_PER_DOUBLING = 8  # 2**SCALE

_TRANSITIONS = {
    "BreakerOpened": ("open", "opened"),
    "BreakerHalfOpened": ("half_open", "half_opened"),
    "BreakerClosed": ("closed", "closed"),
}


def _bucket(value: float) -> int:
    return math.ceil(math.log2(value) * _PER_DOUBLING) - 1


@dataclass
class LatencyHistogram:
    """Durations in seconds, bucketed like an OpenTelemetry exponential histogram."""

    buckets: dict[int, int] = field(default_factory=dict)
    zero_count: int = 0
    count: int = 0
    total: float = 0.0

    def record(self, seconds: float) -> None:
        """Add one duration."""
        self.count += 1
        self.total += max(0.0, seconds)
        if seconds <= 0:
            self.zero_count += 1
            return
        index = _bucket(seconds)
        self.buckets[index] = self.buckets.get(index, 0) + 1

    def quantile(self, q: float) -> float | None:
        """The `q` quantile (0..1), as its bucket's geometric middle; None if empty."""
        if self.count == 0:
            return None
        rank = max(1, math.ceil(q * self.count))
        if rank <= self.zero_count:
            return 0.0
        seen = self.zero_count
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return float(2 ** ((index + 0.5) / _PER_DOUBLING))
        return None  # unreachable: the counts add up to `count`

    def to_json(self) -> dict[str, Any]:
        """Percentiles, plus the buckets in OpenTelemetry's layout."""
        offset = min(self.buckets) if self.buckets else 0
        top = max(self.buckets) if self.buckets else -1
        return {
            "count": self.count,
            "sum": self.total,
            "p50": self.quantile(0.50),
            "p95": self.quantile(0.95),
            "p99": self.quantile(0.99),
            "histogram": {
                "scale": SCALE,
                "zero_count": self.zero_count,
                "positive": {
                    "offset": offset,
                    "bucket_counts": [self.buckets.get(i, 0) for i in range(offset, top + 1)],
                },
            },
        }

    def state(self) -> dict[str, Any]:
        """Checkpoint form."""
        return {
            "buckets": {str(k): v for k, v in self.buckets.items()},
            "zero_count": self.zero_count,
            "count": self.count,
            "total": self.total,
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> LatencyHistogram:
        """Rebuild from `state()`."""
        return cls(
            {int(k): int(v) for k, v in data["buckets"].items()},
            int(data["zero_count"]),
            int(data["count"]),
            float(data["total"]),
        )


@dataclass
class ToolMetrics:
    """One tool's figures; see the module docstring."""

    calls: int = 0
    successes: int = 0
    failures: int = 0
    retried_calls: int = 0
    retries: int = 0
    rejected: int = 0
    attempt_failures: dict[str, int] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    breaker_state: str = "closed"
    breaker_transitions: dict[str, int] = field(default_factory=dict)
    dead_lettered: int = 0
    dlq_open: set[str] = field(default_factory=set)
    dlq_resolved: int = 0
    dlq_discarded: int = 0

    def to_json(self) -> dict[str, Any]:
        """The `phalanx tools stats --json` form of one tool."""
        return {
            "calls": self.calls,
            "successes": self.successes,
            "failures": self.failures,
            "retried_calls": self.retried_calls,
            "retries": self.retries,
            "rejected": self.rejected,
            "attempt_failures": dict(sorted(self.attempt_failures.items())),
            "latency_s": self.latency.to_json(),
            "breaker": {"state": self.breaker_state, "transitions": dict(self.breaker_transitions)},
            "dead_lettered": self.dead_lettered,
            "dlq_depth": len(self.dlq_open),
            "dlq_resolved": self.dlq_resolved,
            "dlq_discarded": self.dlq_discarded,
        }

    def state(self) -> dict[str, Any]:
        """Checkpoint form."""
        return {
            **{k: v for k, v in self.to_json().items() if isinstance(v, int)},
            "attempt_failures": self.attempt_failures,
            "latency": self.latency.state(),
            "breaker_state": self.breaker_state,
            "breaker_transitions": self.breaker_transitions,
            "dlq_open": sorted(self.dlq_open),
        }

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> ToolMetrics:
        """Rebuild from `state()`."""
        return cls(
            calls=data["calls"],
            successes=data["successes"],
            failures=data["failures"],
            retried_calls=data["retried_calls"],
            retries=data["retries"],
            rejected=data["rejected"],
            attempt_failures=dict(data["attempt_failures"]),
            latency=LatencyHistogram.from_state(data["latency"]),
            breaker_state=data["breaker_state"],
            breaker_transitions=dict(data["breaker_transitions"]),
            dead_lettered=data["dead_lettered"],
            dlq_open=set(data["dlq_open"]),
            dlq_resolved=data["dlq_resolved"],
            dlq_discarded=data["dlq_discarded"],
        )


@dataclass
class ToolStats:
    """Every tool's metrics as of global position `position`."""

    tools: dict[str, ToolMetrics] = field(default_factory=dict)
    position: int = 0

    def _tool(self, name: str) -> ToolMetrics:
        metrics = self.tools.get(name)
        if metrics is None:
            metrics = self.tools[name] = ToolMetrics()
        return metrics

    def apply(self, event: Event) -> None:
        """Fold one event of the global log (most are not about tools)."""
        self.position = max(self.position, event.position)
        data = event.data
        if event.type == "StepCompleted":
            done = completed_tool(data)
            if done is not None:
                m = self._tool(done[0])
                m.calls += 1
                m.successes += 1
                m.retried_calls += done[1] > 1
                m.latency.record(float(data.get("duration_s") or 0.0))
        elif event.type == "StepFailed":
            failed = failed_tool(data)
            if failed is None:
                return
            m = self._tool(failed[0])
            if failed[1] == "CircuitOpenError":
                m.rejected += 1
            else:
                kind = str(failed[2].get("error_type") or failed[1])
                m.attempt_failures[kind] = m.attempt_failures.get(kind, 0) + 1
                m.latency.record(float(data.get("duration_s") or 0.0))
            if data.get("retry_at") is not None:
                m.retries += 1
            else:
                m.calls += 1
                m.failures += 1
        elif event.stream_id.startswith("breaker:") and event.type in _TRANSITIONS:
            m = self._tool(event.stream_id[len("breaker:") :])
            state, transition = _TRANSITIONS[event.type]
            m.breaker_state = state
            m.breaker_transitions[transition] = m.breaker_transitions.get(transition, 0) + 1
        elif event.stream_id.startswith("dlq:") and "tool" in data:
            entry = event.stream_id[len("dlq:") :]
            m = self._tool(str(data["tool"]))
            if event.type == "DeadLettered":
                m.dead_lettered += 1
                m.dlq_open.add(entry)
            elif event.type in ("DeadLetterRetried", "DeadLetterResolved"):
                if entry in m.dlq_open:
                    m.dlq_open.discard(entry)
                    m.dlq_resolved += 1
            elif event.type == "DeadLetterDiscarded" and entry in m.dlq_open:
                m.dlq_open.discard(entry)
                m.dlq_discarded += 1

    def fold(self, events: Iterable[Event]) -> None:
        """Fold many events."""
        for event in events:
            self.apply(event)

    def to_json(self, tool: str | None = None) -> dict[str, Any]:
        """`phalanx tools stats --json`: `{"position", "tools": {name: figures}}`."""
        return {
            "position": self.position,
            "tools": {
                name: metrics.to_json()
                for name, metrics in sorted(self.tools.items())
                if tool is None or name == tool
            },
        }

    def state(self) -> dict[str, Any]:
        """Checkpoint form."""
        return {"tools": {name: m.state() for name, m in self.tools.items()}}

    @classmethod
    def from_state(cls, position: int, data: dict[str, Any]) -> ToolStats:
        """Rebuild from a checkpoint."""
        tools = {name: ToolMetrics.from_state(m) for name, m in data.get("tools", {}).items()}
        return cls(tools, position)


async def tool_stats(store: EventStore, *, checkpoint: bool = True) -> ToolStats:
    """Every tool's metrics, folded from the store (from the last checkpoint on).

    With `checkpoint`, the fold is saved for the next reader, so each event is read
    once overall; the checkpoint is only an optimisation and may be deleted.
    """
    stats = ToolStats()
    saved = await store.load_snapshot(STATS_CHECKPOINT) if checkpoint else None
    if saved is not None:
        stats = ToolStats.from_state(saved.version, saved.state)
    start = stats.position
    while page := await store.read_all(after=stats.position, limit=2000):
        stats.fold(page)
        stats.position = page[-1].position
    if checkpoint and stats.position > start:
        await store.save_snapshot(STATS_CHECKPOINT, stats.position, stats.state())
    return stats
