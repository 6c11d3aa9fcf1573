"""Circuit breakers: stop calling a tool that keeps failing, and probe it back to health.

A breaker is closed (calls go through), open (calls are refused at once with
`CircuitOpenError`, without touching the tool) or half-open (a limited number of probe
calls go through; the first to succeed closes it, a failing one opens it again).

Where the state lives. A shared breaker (the default) is a stream in the store,
`breaker:{tool}`, so every worker process sharing the store sees the same breaker.
Its state is a fold over the stream, and every state change is an event appended
with the version the deciding process last saw (compare-and-set): two processes that
both decide to open it, or to claim the last probe, cannot both win; the loser re-reads
and decides again on the new state. An in-process breaker (`shared=False`) runs the
same fold and the same decisions over an in-memory stream, for a single process.

What the hot path costs. A call through a closed breaker does no I/O: it reads the
process's cached fold. The cache is refreshed from the store at most every
`refresh_interval` seconds, which bounds how long another process's decision takes to
be seen here (a staleness bound, as for an eventual read); a failure always refreshes.
Successes are never written. In count mode each failure is appended (failures are the
slow path, and writing them is what lets the threshold count every process's
failures); in rate mode successes would have to be written too, so the rate is this
process's own view of the window, while opening is still shared.
"""

from __future__ import annotations

import logging
import os
import socket
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import ConcurrencyError, StoreError
from ..journal import EventStore, NewEvent
from . import _spans as spans

logger = logging.getLogger("phalanx")

BreakerState = Literal["closed", "open", "half_open"]
Admission = Literal["normal", "probe"]

#: Event types of a breaker stream that change its state (indexed: found by type).
TRANSITIONS = ("BreakerOpened", "BreakerHalfOpened", "BreakerClosed")

_SNAPSHOT_EVERY = 256


def breaker_stream(tool: str) -> str:
    """The stream holding a tool's shared circuit breaker."""
    return f"breaker:{tool}"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, kw_only=True)
class CircuitBreaker:
    """When to stop calling a failing tool, for how long, and how to try it again.

    Count mode (the default) opens the breaker after `failure_threshold` failed
    attempts within `window` seconds, counted across every process sharing the store.
    Rate mode (`failure_rate` set) opens it when at least that fraction of this
    process's last-`window`-seconds attempts failed, over at least `min_calls` calls.
    Only transient failures count: errors the tool's retry policy never retries
    (bad requests, HTTP 4xx) say nothing about the tool's health. It stays open
    `open_for` seconds, then lets `half_open_probes` calls through at once; a probe
    that never reports (its process died) frees its slot after `probe_timeout`
    (default `open_for`).

    Example::

        @phalanx.tool(breaker=phalanx.CircuitBreaker(failure_threshold=5, open_for=30))
        async def search(query: str) -> str: ...

    Raises:
        ValueError: a threshold, duration or rate out of range.
    """

    failure_threshold: int = 5
    window: float = 60.0
    failure_rate: float | None = None
    min_calls: int = 10
    open_for: float = 30.0
    half_open_probes: int = 1
    probe_timeout: float | None = None
    shared: bool = True
    refresh_interval: float = 1.0
    _local: dict[str, Breaker] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    _stored: weakref.WeakKeyDictionary[Any, dict[str, Breaker]] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.min_calls < 1 or self.half_open_probes < 1:
            raise ValueError("failure_threshold, min_calls and half_open_probes must be >= 1")
        if self.window <= 0 or self.open_for < 0 or self.refresh_interval < 0:
            raise ValueError("window must be > 0; open_for and refresh_interval >= 0")
        if self.failure_rate is not None and not 0 < self.failure_rate <= 1:
            raise ValueError("failure_rate is a fraction in (0, 1]")
        if self.probe_timeout is not None and self.probe_timeout <= 0:
            raise ValueError("probe_timeout must be > 0")

    def for_tool(self, tool: str, store: EventStore | None) -> Breaker:
        """The breaker of `tool`: in `store` if shared and given, else in this process."""
        if not self.shared or store is None:
            breaker = self._local.get(tool)
            if breaker is None:
                breaker = self._local[tool] = Breaker(self, tool, None)
            return breaker
        per_store = self._stored.get(store)
        if per_store is None:
            per_store = self._stored[store] = {}
        breaker = per_store.get(tool)
        if breaker is None:
            breaker = per_store[tool] = Breaker(self, tool, store)
        return breaker

    def reset_local(self) -> None:
        """Forget in-process state (the store's state is never forgotten)."""
        self._local.clear()
        self._stored.clear()


@dataclass
class _Fold:
    """A breaker stream folded: its state and what the next decision needs."""

    state: BreakerState = "closed"
    version: int = 0
    open_until: float = 0.0
    failures: list[float] = field(default_factory=list)
    probes: list[float] = field(default_factory=list)

    def apply(self, event_type: str, data: Mapping[str, Any], keep: int) -> None:
        at = float(data.get("at", 0.0))
        if event_type == "BreakerFailureRecorded":
            if self.state == "closed":
                self.failures.append(at)
                # Only the last `keep` (= threshold) failures can decide to open.
                del self.failures[:-keep]
        elif event_type == "BreakerOpened":
            self.state, self.open_until = "open", float(data["until"])
            self.failures, self.probes = [], []
        elif event_type == "BreakerHalfOpened":
            self.state, self.probes = "half_open", []
        elif event_type == "BreakerProbeStarted":
            self.probes.append(at)
        elif event_type == "BreakerClosed":
            self.state, self.failures, self.probes = "closed", [], []

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "open_until": self.open_until,
            "failures": self.failures,
            "probes": self.probes,
        }

    @classmethod
    def from_json(cls, version: int, data: Mapping[str, Any]) -> _Fold:
        return cls(
            state=data["state"],
            version=version,
            open_until=float(data["open_until"]),
            failures=[float(x) for x in data["failures"]],
            probes=[float(x) for x in data["probes"]],
        )


class Breaker:
    """One tool's breaker as this process sees it; see the module docstring.

    `admit` before an attempt (raises nothing: returns None when refused, so the
    caller builds its own typed error), `succeeded` / `failed` after it. Store errors
    are logged and the breaker fails open: it guards the tool, and must not be the
    reason a call fails when the store hiccups.
    """

    def __init__(self, policy: CircuitBreaker, tool: str, store: EventStore | None) -> None:
        self.policy = policy
        self.tool = tool
        self.store = store
        self.stream = breaker_stream(tool)
        self.fold = _Fold()
        self._loaded = store is None
        self._refreshed_at: float | None = None
        self._calls: deque[tuple[float, bool]] = deque()
        self._probe_timeout = policy.probe_timeout or policy.open_for or 1.0
        #: The version of the last snapshot saved or loaded here.
        self._snapshotted = 0

    @property
    def state(self) -> BreakerState:
        """The state last seen (closed, open or half_open)."""
        return self.fold.state

    # -- reading -----------------------------------------------------------------------

    async def _refresh(self, monotonic: float) -> None:
        if self.store is None:
            return
        if not self._loaded:
            snapshot = await self.store.load_snapshot(self.stream)
            if snapshot is not None and snapshot.version > self.fold.version:
                self.fold = _Fold.from_json(snapshot.version, snapshot.state)
                self._snapshotted = snapshot.version
            self._loaded = True
        events = await self.store.read_stream(self.stream, from_seq=self.fold.version + 1)
        self._apply([(e.seq, e.type, e.data) for e in events])
        self._refreshed_at = monotonic

    def _apply(self, events: Sequence[tuple[int, str, Mapping[str, Any]]]) -> None:
        keep = self.policy.failure_threshold
        for seq, event_type, data in events:
            if seq != self.fold.version + 1:
                continue  # read twice by two overlapping refreshes: applied already
            self.fold.apply(event_type, data, keep)
            self.fold.version = seq

    async def _write(self, events: list[tuple[str, dict[str, Any]]], *, cas: bool) -> bool:
        """Append events (compare-and-set if `cas`); False if someone else wrote first."""
        expected = self.fold.version
        if self.store is None:
            base = self.fold.version
            self._apply([(base + i + 1, t, d) for i, (t, d) in enumerate(events)])
            for event_type, data in events:
                if event_type in TRANSITIONS:
                    logger.info("tool %s: circuit breaker %s %s", self.tool, event_type, data)
            return True
        batch = [NewEvent(t, d, indexed=t in TRANSITIONS) for t, d in events]
        try:
            result = await self.store.append(
                self.stream, batch, expected_version=expected if cas else None
            )
        except ConcurrencyError:
            await self._refresh(self._refreshed_at or 0.0)
            return False
        for event_type, _ in events:
            if event_type in TRANSITIONS:
                spans.breaker_changed(self.tool, event_type)
        if result.version == expected + len(events):
            self._apply([(expected + i + 1, t, d) for i, (t, d) in enumerate(events)])
        else:
            await self._refresh(self._refreshed_at or 0.0)
        if self.fold.version - self._snapshotted >= _SNAPSHOT_EVERY:
            # Bounds what a process opening the breaker for the first time must read:
            # a tool that fails for weeks appends a failure event every time.
            self._snapshotted = self.fold.version
            await self.store.save_snapshot(self.stream, self.fold.version, self.fold.to_json())
        return True

    # -- deciding ----------------------------------------------------------------------

    async def admit(self, now: float, monotonic: float) -> Admission | None:
        """Whether an attempt may run now: as a normal call, as a probe, or not (None)."""
        try:
            return await self._admit(now, monotonic)
        except StoreError as exc:
            logger.warning(
                "tool %s: breaker state unavailable (%s); calling anyway", self.tool, exc
            )
            return "normal"

    async def _admit(self, now: float, monotonic: float) -> Admission | None:
        due = self._refreshed_at is None or monotonic - self._refreshed_at >= (
            self.policy.refresh_interval
        )
        if self.store is not None and due:
            await self._refresh(monotonic)
        while True:
            fold = self.fold
            if fold.state == "closed":
                return "normal"
            if fold.state == "open":
                if now < fold.open_until:
                    return None
                claim: dict[str, Any] = {"at": now, "owner": _owner()}
                opened = [("BreakerHalfOpened", {"at": now}), ("BreakerProbeStarted", claim)]
                if await self._write(opened, cas=True):
                    return "probe"
                continue
            live = [t for t in fold.probes if t > now - self._probe_timeout]
            if len(live) >= self.policy.half_open_probes:
                return None
            if await self._write(
                [("BreakerProbeStarted", {"at": now, "owner": _owner()})], cas=True
            ):
                return "probe"

    async def succeeded(self, admission: Admission, now: float) -> None:
        """Report a successful attempt."""
        if admission == "normal":
            if self.policy.failure_rate is not None:
                self._calls.append((now, True))
            return
        try:
            while self.fold.state == "half_open":
                closing = {"at": now, "reason": "a probe call succeeded", "owner": _owner()}
                if await self._write([("BreakerClosed", closing)], cas=True):
                    self._calls.clear()
                    return
        except StoreError as exc:
            logger.warning("tool %s: could not close its breaker: %s", self.tool, exc)

    async def failed(
        self, admission: Admission, now: float, error_type: str
    ) -> dict[str, Any] | None:
        """Report a failed attempt (one that counts); the `BreakerOpened` data if it opened it."""
        try:
            return await self._failed(admission, now, error_type)
        except StoreError as exc:
            logger.warning("tool %s: could not record a failure: %s", self.tool, exc)
            return None

    def _opening(self, now: float, reason: str, failures: int) -> dict[str, Any]:
        return {
            "at": now,
            "until": now + self.policy.open_for,
            "reason": reason,
            "failures": failures,
            "owner": _owner(),
        }

    async def _failed(
        self, admission: Admission, now: float, error_type: str
    ) -> dict[str, Any] | None:
        policy = self.policy
        if admission == "probe":
            while self.fold.state == "half_open":
                opening = self._opening(now, f"a probe call failed ({error_type})", 1)
                if await self._write([("BreakerOpened", opening)], cas=True):
                    return opening
            return None
        if policy.failure_rate is not None:
            self._calls.append((now, False))
            while self._calls and self._calls[0][0] <= now - policy.window:
                self._calls.popleft()
            calls = len(self._calls)
            failures = sum(1 for _, ok in self._calls if not ok)
            if calls < policy.min_calls or failures / calls < policy.failure_rate:
                return None
            reason = f"{failures} of the last {calls} calls failed (last: {error_type})"
            count = failures
        else:
            if self.fold.state != "closed":
                return None
            recorded = {"at": now, "error_type": error_type}
            await self._write([("BreakerFailureRecorded", recorded)], cas=False)
            recent = [t for t in self.fold.failures if t > now - policy.window]
            if len(recent) < policy.failure_threshold:
                return None
            reason = f"{len(recent)} failures within {policy.window:g}s (last: {error_type})"
            count = len(recent)
        while self.fold.state == "closed":
            opening = self._opening(now, reason, count)
            if await self._write([("BreakerOpened", opening)], cas=True):
                self._calls.clear()
                return opening
        return None


def fold_breaker(events: Sequence[Any], threshold: int = 1_000_000) -> dict[str, Any]:
    """The state a breaker stream's events fold to (for `tools stats` and tests)."""
    fold = _Fold()
    for event in events:
        fold.apply(event.type, event.data, threshold)
        fold.version = event.seq
    return {"state": fold.state, "open_until": fold.open_until, "version": fold.version}
