"""Circuit breakers: open after a threshold, fail fast, probe, close; shared through the store."""

from __future__ import annotations

import asyncio

import pytest

import phalanx
from phalanx.journal import EventStore
from phalanx.testing import VirtualClock
from phalanx.tools import CircuitBreaker, DeadLetterQueue, ToolUnavailable, tool
from phalanx.tools._call import call_in_memory
from tests.conftest import StoreFactory
from tests.tools import workflows as wf
from tests.tools.helpers import of_type


async def _types(store: EventStore, name: str = "guarded") -> list[str]:
    return [e.type for e in await store.read_stream(f"breaker:{name}")]


async def test_breaker_opens_after_its_threshold_then_half_opens_and_closes(
    store_factory: StoreFactory,
) -> None:
    """Two failures open it; calls then fail fast untouched; a probe after open_for closes it."""
    clock = VirtualClock(start=1000.0)
    store = await store_factory()
    wf.FAULTS["guarded"] = 2
    for _ in range(2):
        report = await call_in_memory(wf.guarded, {"x": 1}, clock=clock, store=store)
        assert report.outcome == "unavailable"
    assert wf.CALLS["guarded"] == 2
    assert await _types(store) == [
        "BreakerFailureRecorded",
        "BreakerFailureRecorded",
        "BreakerOpened",
    ]
    [opened] = wf.ESCALATIONS
    assert opened.kind == "breaker_opened" and "2 failures" in opened.summary

    clock.advance(59)
    refused = await call_in_memory(wf.guarded, {"x": 1}, clock=clock, store=store)
    assert isinstance(refused.value, ToolUnavailable)
    assert refused.value.reason == "circuit_open" and refused.attempts == 0
    assert wf.CALLS["guarded"] == 2, "an open breaker does not touch the tool"

    clock.advance(2)  # open_for (60 s) has passed: the next call is the probe
    probe = await call_in_memory(wf.guarded, {"x": 7}, clock=clock, store=store)
    assert (probe.outcome, probe.value) == ("ok", 7)
    assert wf.CALLS["guarded"] == 3
    assert (await _types(store))[3:] == [
        "BreakerHalfOpened",
        "BreakerProbeStarted",
        "BreakerClosed",
    ]
    again = await call_in_memory(wf.guarded, {"x": 8}, clock=clock, store=store)
    assert again.value == 8


async def test_a_failing_probe_opens_the_breaker_again(store_factory: StoreFactory) -> None:
    """A half-open probe that fails re-opens the breaker for another open_for."""
    clock = VirtualClock(start=1000.0)
    store = await store_factory()
    wf.FAULTS["guarded"] = 3
    for _ in range(2):
        await call_in_memory(wf.guarded, {"x": 1}, clock=clock, store=store)
    clock.advance(61)
    probe = await call_in_memory(wf.guarded, {"x": 1}, clock=clock, store=store)
    assert probe.outcome == "unavailable" and wf.CALLS["guarded"] == 3
    types = await _types(store)
    assert types[-3:] == ["BreakerHalfOpened", "BreakerProbeStarted", "BreakerOpened"]
    last = (await store.read_stream("breaker:guarded"))[-1]
    assert last.data["until"] == pytest.approx(1061.0 + 60.0)
    assert len(wf.ESCALATIONS) == 2


async def test_two_store_instances_see_the_same_breaker(store_factory: StoreFactory) -> None:
    """Failures through one store open the breaker for the other; its probe closes it for both."""
    clock = VirtualClock(start=1000.0)
    one, two = await store_factory(), await store_factory()
    wf.FAULTS["guarded"] = 2
    await call_in_memory(wf.guarded, {"x": 1}, clock=clock, store=one)
    await call_in_memory(wf.guarded, {"x": 1}, clock=clock, store=two)
    assert await _types(one) == [
        "BreakerFailureRecorded",
        "BreakerFailureRecorded",
        "BreakerOpened",
    ], "one failure from each process counts toward one threshold"
    refused = await call_in_memory(wf.guarded, {"x": 1}, clock=clock, store=one)
    assert refused.value.reason == "circuit_open"
    assert wf.CALLS["guarded"] == 2
    clock.advance(61)
    assert (await call_in_memory(wf.guarded, {"x": 3}, clock=clock, store=two)).value == 3
    assert (await call_in_memory(wf.guarded, {"x": 4}, clock=clock, store=one)).value == 4
    assert (await _types(one))[-1] == "BreakerClosed"


async def test_concurrent_deciders_cannot_both_flip_the_breaker(
    store_factory: StoreFactory,
) -> None:
    """Two processes deciding at once: one BreakerOpened, and one probe while half-open."""
    clock = VirtualClock(start=1000.0)
    gate = asyncio.Event()
    breaker = CircuitBreaker(failure_threshold=2, open_for=10.0, refresh_interval=0.0)

    @tool(breaker=breaker, notifiers=[])
    async def shaky(fail: bool) -> str:
        """Fails or, once the gate opens, answers."""
        if fail:
            raise ConnectionError("down")
        await gate.wait()
        return "up"

    one, two = await store_factory(), await store_factory()
    await asyncio.gather(
        call_in_memory(shaky, {"fail": True}, clock=clock, store=one),
        call_in_memory(shaky, {"fail": True}, clock=clock, store=two),
        call_in_memory(shaky, {"fail": True}, clock=clock, store=one),
    )
    assert (await _types(one, "shaky")).count("BreakerOpened") == 1
    clock.advance(11)
    async with asyncio.TaskGroup() as group:
        probe = group.create_task(call_in_memory(shaky, {"fail": False}, clock=clock, store=one))
        await asyncio.sleep(0.05)  # the probe is in flight, holding the only probe slot
        other = await call_in_memory(shaky, {"fail": False}, clock=clock, store=two)
        assert other.value.reason == "circuit_open", "half-open allows one probe at a time"
        gate.set()
    assert probe.result().value == "up"
    types = await _types(one, "shaky")
    assert types.count("BreakerProbeStarted") == 1 and types[-1] == "BreakerClosed"


async def test_in_process_breaker_with_a_failure_rate() -> None:
    """shared=False keeps state in memory; rate mode opens at the rate over min_calls."""
    clock = VirtualClock(start=1000.0)
    breaker = CircuitBreaker(failure_rate=0.5, min_calls=4, window=30.0, open_for=5.0, shared=False)
    calls: list[bool] = []

    @tool(breaker=breaker, notifiers=[])
    async def coin(fail: bool) -> bool:
        """Fails on request."""
        calls.append(fail)
        if fail:
            raise TimeoutError("slow backend")
        return True

    for fail in (False, True, False):
        await call_in_memory(coin, {"fail": fail}, clock=clock)
    assert breaker.for_tool("coin", None).state == "closed", "3 calls < min_calls"
    await call_in_memory(coin, {"fail": True}, clock=clock)
    assert breaker.for_tool("coin", None).state == "open", "2 of 4 failed: rate 0.5"
    refused = await call_in_memory(coin, {"fail": False}, clock=clock)
    assert refused.value.reason == "circuit_open" and len(calls) == 4
    clock.advance(6)
    assert (await call_in_memory(coin, {"fail": False}, clock=clock)).value is True
    assert breaker.for_tool("coin", None).state == "closed"


async def test_breaker_in_a_durable_run_refuses_and_journals_the_refusals(
    runtime: phalanx.Runtime,
) -> None:
    """In a run, refused calls are journaled as CircuitOpenError and not dead-lettered."""
    wf.FAULTS["guarded"] = 10
    outcome = await runtime.run(wf.guarded_flow, {"calls": 4}, run_id="g")
    assert outcome.ok, outcome.error
    assert outcome.result == ["dead_lettered", "dead_lettered", "circuit_open", "circuit_open"]
    assert wf.CALLS["guarded"] == 2
    failed = of_type((await runtime.history("g")).events, "StepFailed", "tool/guarded")
    kinds = [e.data["error"]["type"].rpartition(".")[2] for e in failed]
    assert kinds == ["ToolAttemptError"] * 2 + ["CircuitOpenError"] * 2
    assert len(await DeadLetterQueue(runtime).entries()) == 2
    assert [e.kind for e in wf.ESCALATIONS].count("breaker_opened") == 1


async def test_a_long_breaker_stream_is_snapshotted_and_loaded_from_the_snapshot(
    store_factory: StoreFactory,
) -> None:
    """Failures accumulate in a snapshot; another process starts from it and keeps counting."""
    policy = CircuitBreaker(failure_threshold=400, window=1e9, refresh_interval=0.0)
    one = await store_factory()
    first = policy.for_tool("t", one)
    for i in range(300):
        assert await first.failed("normal", 1000.0 + i, "OSError") is None
    snapshot = await one.load_snapshot("breaker:t")
    assert snapshot is not None and snapshot.version >= 256
    await one.close()
    two = await store_factory()
    second = policy.for_tool("t", two)
    assert await second.admit(2000.0, 0.0) == "normal"
    assert second.fold.version == 300 and len(second.fold.failures) == 300
    opened = None
    for i in range(100):
        opened = await second.failed("normal", 2000.0 + i, "OSError")
    assert opened is not None and "400 failures" in opened["reason"]
    assert second.state == "open"
