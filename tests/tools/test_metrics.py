"""Per-tool metrics, folded from the journal: the same figures whichever process asks."""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

import phalanx
from phalanx.testing import VirtualClock
from phalanx.tools import DeadLetterQueue, tool_stats
from phalanx.tools._metrics import STATS_CHECKPOINT, LatencyHistogram
from tests.tools import workflows as wf

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]


async def _runs(open_rt: OpenRuntime) -> None:
    wf.FAULTS.update(flaky=1, guarded=10)
    async with open_rt(clock=VirtualClock()) as runtime:
        assert (await runtime.run(wf.flaky_flow, {"x": 1}, run_id="f")).ok
    async with open_rt() as runtime:
        assert (await runtime.run(wf.broken_flow, {}, run_id="b")).ok
        assert (await runtime.run(wf.guarded_flow, {"calls": 4}, run_id="g")).ok


async def test_stats_count_calls_failures_retries_breaker_and_dlq(
    open_rt: OpenRuntime, url: str
) -> None:
    """Every figure comes out of the journal: calls, errors by type, retries, DLQ, breaker."""
    await _runs(open_rt)
    async with open_rt() as runtime:
        tools: dict[str, Any] = (await tool_stats(runtime.store)).to_json()["tools"]
    flaky, broken, guarded = tools["flaky"], tools["broken"], tools["guarded"]
    assert (flaky["calls"], flaky["successes"], flaky["failures"]) == (1, 1, 0)
    assert flaky["retries"] == 1 and flaky["retried_calls"] == 1
    assert flaky["attempt_failures"] == {"ConnectionError": 1}
    assert flaky["latency_s"]["count"] == 2
    assert (broken["calls"], broken["failures"], broken["retries"]) == (1, 1, 2)
    assert broken["attempt_failures"] == {"RuntimeError": 3}
    assert broken["dead_lettered"] == 1 and broken["dlq_depth"] == 1
    latency = broken["latency_s"]
    assert latency["count"] == 3 and latency["p50"] <= latency["p95"] <= latency["p99"]
    assert (guarded["calls"], guarded["failures"], guarded["rejected"]) == (4, 4, 2)
    assert guarded["attempt_failures"] == {"ConnectionError": 2}
    assert guarded["breaker"] == {"state": "open", "transitions": {"opened": 1}}
    assert guarded["dlq_depth"] == 2


async def test_stats_resume_from_their_checkpoint(open_rt: OpenRuntime) -> None:
    """A second reader folds only new events, and agrees with a fold from scratch."""
    await _runs(open_rt)
    async with open_rt() as runtime:
        first = await tool_stats(runtime.store)
        saved = await runtime.store.load_snapshot(STATS_CHECKPOINT)
        assert saved is not None and saved.version == first.position
        queue = DeadLetterQueue(runtime)
        [entry, *_] = await queue.entries(tool="guarded")
        await queue.resolve(entry.id, 0, by="ops")
        again = await tool_stats(runtime.store)
        fresh = await tool_stats(runtime.store, checkpoint=False)
    assert again.position > first.position
    assert again.to_json() == fresh.to_json()
    guarded = again.to_json()["tools"]["guarded"]
    assert (guarded["dlq_depth"], guarded["dlq_resolved"]) == (1, 1)


async def test_two_processes_see_the_same_stats(open_rt: OpenRuntime) -> None:
    """Stats written by runs through one store instance are read through another."""
    await _runs(open_rt)
    async with open_rt() as other:
        assert (await tool_stats(other.store, checkpoint=False)).tools["broken"].calls == 1


@pytest.mark.parametrize("values", [[0.001] * 50 + [0.1] * 45 + [2.0] * 5, [0.5], [0.0, 0.2]])
def test_latency_percentiles_are_within_the_bucket_error(values: list[float]) -> None:
    """Quantiles read from the exponential histogram are within 9% of the exact ones."""
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    ordered = sorted(values)
    for q in (0.5, 0.95, 0.99):
        exact = ordered[max(0, math.ceil(q * len(values)) - 1)]
        estimate = histogram.quantile(q)
        assert estimate is not None
        assert estimate == pytest.approx(exact, rel=0.09, abs=1e-12)
    layout = histogram.to_json()["histogram"]
    assert layout["scale"] == 3
    assert sum(layout["positive"]["bucket_counts"]) + layout["zero_count"] == len(values)
