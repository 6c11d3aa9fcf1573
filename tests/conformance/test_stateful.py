"""Hypothesis: each store behaves like a tiny in-memory model of the journal."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from phalanx import (
    ConcurrencyError,
    FencedError,
    Lease,
    LeaseHeldError,
    NewEvent,
    store_from_url,
)
from phalanx.journal import EventStore
from phalanx.testing import VirtualClock
from tests.conftest import PG_URL, drop_schema, require_postgres

STREAMS = st.sampled_from(["a", "b", "c"])
OWNERS = st.sampled_from(["x", "y"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


class JournalMachine(RuleBasedStateMachine):
    """Drives a real store and a model with the same operations and compares them."""

    url: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.clock = VirtualClock()
        self.streams: dict[str, list[tuple[str, Any, int | None]]] = {}
        self.leases: dict[str, Lease] = {}  # the newest lease handed out per stream
        self.held: list[Lease] = []  # every lease ever handed out, stale ones included
        self.schema = ""

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)

    @initialize()
    def open_store(self) -> None:
        url = self.url
        if url.startswith("postgresql"):
            self.schema = f"h_{secrets.token_hex(6)}"
            url = f"{url}?schema={self.schema}"
        self.store: EventStore = store_from_url(url, clock=self.clock)
        self.run(self.store.open())

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.run(self.store.close())
        if self.schema:
            self.run(drop_schema(self.schema))
        self.runner.close()

    def epoch_of(self, stream: str) -> int | None:
        lease = self.leases.get(stream)
        return None if lease is None else lease.epoch

    @rule(
        stream=STREAMS,
        data=st.lists(
            st.dictionaries(st.text(max_size=5), JSON, max_size=3), min_size=1, max_size=4
        ),
        expect=st.sampled_from(["right", "wrong", "none"]),
        epoch_choice=st.sampled_from(["current", "none", "stale"]),
    )
    def append(
        self, stream: str, data: list[dict[str, Any]], expect: str, epoch_choice: str
    ) -> None:
        version = len(self.streams.get(stream, []))
        expected = {"right": version, "wrong": version + 1, "none": None}[expect]
        current = self.epoch_of(stream)
        epoch = {"current": current, "none": None, "stale": (current or 0) - 1 or None}[
            epoch_choice
        ]
        events = [NewEvent("E", d) for d in data]
        should_fence = epoch != current
        should_conflict = expected is not None and expected != version
        try:
            result = self.run(
                self.store.append(stream, events, expected_version=expected, epoch=epoch)
            )
        except FencedError:
            assert should_fence
            return
        except ConcurrencyError as exc:
            assert should_conflict and not should_fence
            assert exc.actual_version == version
            return
        assert not should_fence and not should_conflict
        self.streams.setdefault(stream, []).extend(("E", d, epoch) for d in data)
        assert result.version == version + len(data)

    @rule(stream=STREAMS, owner=OWNERS, force=st.booleans())
    def acquire(self, stream: str, owner: str, force: bool) -> None:
        previous = self.leases.get(stream)
        live = (
            previous is not None and previous.owner != "" and previous.expires_at > self.clock.now()
        )
        try:
            if force:
                lease = self.run(self.store.take_over_lease(stream, owner, 10))
            else:
                lease = self.run(self.store.acquire_lease(stream, owner, 10))
        except LeaseHeldError:
            assert live and not force and previous is not None and previous.owner != owner
            return
        if previous is None:
            assert lease.epoch == 1
        elif live and previous.owner == owner and not force:
            assert lease.epoch == previous.epoch
        else:
            assert lease.epoch == previous.epoch + 1
        self.leases[stream] = lease
        self.held.append(lease)

    @precondition(lambda self: bool(self.held))
    @rule(pick=st.integers(0, 100), release=st.booleans())
    def renew_or_release(self, pick: int, release: bool) -> None:
        lease = self.held[pick % len(self.held)]
        current = self.leases[lease.stream_id]
        valid = current.epoch == lease.epoch and current.owner == lease.owner
        try:
            if release:
                self.run(self.store.release_lease(lease))
                self.leases[lease.stream_id] = Lease(lease.stream_id, "", lease.epoch, 0.0)
            else:
                renewed = self.run(self.store.renew_lease(lease, 10))
                self.leases[lease.stream_id] = renewed
                self.held.append(renewed)
        except FencedError:
            assert not valid
            return
        assert valid

    @rule(seconds=st.sampled_from([1.0, 6.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def streams_match_the_model(self) -> None:
        if not hasattr(self, "store"):
            return
        for stream, expected in self.streams.items():
            events = self.run(self.store.read_stream(stream))
            assert [(e.type, e.data, e.epoch) for e in events] == expected
            assert [e.seq for e in events] == list(range(1, len(expected) + 1))
        log = self.run(self.store.read_all(limit=10_000))
        assert len(log) == sum(len(v) for v in self.streams.values())
        assert [e.position for e in log] == sorted({e.position for e in log})


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"]
)
def test_store_matches_model(backend: str, tmp_path: Any) -> None:
    """Random sequences of appends and lease operations agree with the model."""
    if backend == "postgres":
        require_postgres()
        url, examples = PG_URL, 15
    elif backend == "memory":
        url, examples = "memory://", 40  # unnamed: a fresh database for every example
    else:
        url, examples = "", 40

    class Machine(JournalMachine):
        pass

    counter = iter(range(10**6))

    def fresh_sqlite_url() -> str:
        return f"sqlite:///{tmp_path / f'h{next(counter)}.db'}"

    if backend == "sqlite":
        original_init = Machine.__init__

        def init(self: JournalMachine) -> None:
            original_init(self)
            self.url = fresh_sqlite_url()

        Machine.__init__ = init  # type: ignore[method-assign]  # per-example fresh database file
    else:
        Machine.url = url
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
