"""Rate limits shared through the store: the bucket's rule, its atomicity, its use."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import phalanx
from phalanx.agents import Agent, Rule, Script, ScriptedModel, Turn
from phalanx.journal import EventStore, RateLimit, open_queue
from phalanx.journal._buckets import check_rate, decide_take
from phalanx.tools import call_tool, tool
from tests.chaos.harness import ROOT, child_env, workspace

CALLED: list[float] = []


@tool()
async def paced_echo(text: str) -> str:
    """Echo `text`, noting when it ran."""
    CALLED.append(time.monotonic())
    return text


@phalanx.workflow
async def echo_many(ctx: phalanx.WorkflowContext, n: int) -> list[str]:
    """Call the paced tool `n` times in a row."""
    return [await call_tool(ctx, paced_echo, text=str(i)) for i in range(n)]


GREETER = Agent(
    "greeter",
    model=ScriptedModel(
        Script(rules=(Rule("", (Turn(text="hi"),)),)), name="limited-1", latency=0.0
    ),
    timeout=1.0,
)


@phalanx.workflow
async def greet(ctx: phalanx.WorkflowContext) -> str:
    """One agent turn."""
    return str((await GREETER.run(ctx, "hello")).output)


rates = st.floats(min_value=0.01, max_value=1000.0)
bursts = st.floats(min_value=1.0, max_value=100.0)
gaps = st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=60)


@given(rates, bursts, gaps)
def test_tokens_taken_never_exceed_rate_times_time_plus_burst(
    rate: float, burst: float, steps: list[float]
) -> None:
    """Whatever the call times, takes in [0, t] are at most rate * t + burst, never negative."""
    limit = RateLimit("k", rate, burst)
    bucket, now, taken = None, 0.0, 0
    for gap in steps:
        now += gap
        bucket, wait = decide_take(bucket, limit, now)
        taken += wait == 0
        assert 0.0 <= bucket.tokens <= burst
        assert taken <= rate * now + burst + 1e-6
        if wait:
            after, again = decide_take(bucket, limit, now + wait)
            assert again == 0, "a token is there after the wait the bucket named"
            assert after.tokens >= -1e-9


@given(rates, st.integers(min_value=1, max_value=100), st.floats(min_value=0.0, max_value=100.0))
def test_a_new_bucket_is_full_and_a_backwards_clock_refills_nothing(
    rate: float, burst: int, back: float
) -> None:
    """A fresh bucket gives `burst` at once; a clock that steps back adds no tokens."""
    limit = RateLimit("k", rate, burst)
    bucket = None
    for _ in range(burst):
        bucket, wait = decide_take(bucket, limit, 50.0)
        assert wait == 0
    assert bucket is not None
    bucket, wait = decide_take(bucket, limit, 50.0 - back)
    assert wait > 0 and bucket.tokens < 1 and bucket.updated == 50.0


@pytest.mark.parametrize(
    ("key", "rate", "burst"),
    [("", 1.0, 1.0), ("k", 0.0, 1.0), ("k", -1.0, 1.0), ("k", float("nan"), 1.0), ("k", 1.0, 0.5)],
)
def test_nonsense_limits_are_refused(key: str, rate: float, burst: float) -> None:
    """An empty key, a rate that is not positive or a burst below 1 raise ValueError."""
    with pytest.raises(ValueError):
        check_rate(key, rate, burst)


async def test_store_declares_lists_clears_and_takes(store: EventStore) -> None:
    """set_rate declares, rates lists, take_token spends the burst, None when undeclared."""
    queue = open_queue(store)
    await queue.open()
    assert await queue.take_token("tool:x") is None
    await queue.set_rate("tool:x", 0.001, 2)
    assert await queue.rates() == [RateLimit("tool:x", 0.001, 2.0)]
    assert [await queue.take_token("tool:x") for _ in range(2)] == [0.0, 0.0]
    wait = await queue.take_token("tool:x")
    assert wait is not None and wait > 100, "the third token is ~1000 s away"
    with pytest.raises(ValueError):
        await queue.set_rate("tool:x", 0, 1)
    await queue.set_rate("tool:x", None)
    assert await queue.rates() == []
    assert await queue.take_token("tool:x") is None


def test_processes_sharing_a_bucket_never_exceed_rate_times_time_plus_burst(
    url: str, tmp_path: Path
) -> None:
    """Four processes taking from one bucket at once: by any time t, at most rate*t + burst."""
    rate, burst, each = 20.0, 3.0, 8
    with workspace(tmp_path, url) as ws:
        assert ws.cli("rate-limit", "model:m", str(rate), "--burst", str(burst)).returncode == 0
    start_at = time.time() + 5.0  # after every interpreter has started
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.fleet.bucket_taker",
                url,
                "model:m",
                str(start_at),
                str(each),
            ],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e for _, e in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    # Each take's bucket time lies between its process's `asked` and its recorded time.
    first = min(r["asked"] for r in reports)
    every = sorted(t for r in reports for t in r["taken"])
    assert len(every) == 4 * each
    for index, at in enumerate(every):
        assert index + 1 <= rate * (at - first) + burst + 1e-6, (index, at - first)
    spans = sorted((r["taken"][0], r["taken"][-1]) for r in reports)
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "the takers really overlapped"


async def test_a_declared_tool_limit_paces_its_calls(url: str, open_rt: Any) -> None:
    """With tool:paced_echo at 10/s, burst 1, five calls span at least 0.4 s; none undeclared."""
    CALLED.clear()
    async with open_rt() as runtime:
        queue = await runtime.work_queue()
        await queue.set_rate("tool:paced_echo", 10.0, 1)
        outcome = await runtime.run(echo_many, {"n": 5}, run_id="paced")
        assert outcome.ok, outcome.error
        assert outcome.result == ["0", "1", "2", "3", "4"]
        assert CALLED[-1] - CALLED[0] >= 0.4 - 0.02
        types = {e.type for e in (await runtime.history("paced")).events}
        assert not any("Rate" in t or "Token" in t for t in types), "nothing extra journaled"


async def test_a_declared_model_limit_holds_calls_within_the_agent_timeout(
    open_rt: Any,
) -> None:
    """model:limited-1 with a burst of 2 and ~no refill: two runs answer, the third times out."""
    async with open_rt() as runtime:
        await (await runtime.work_queue()).set_rate("model:limited-1", 0.001, 2)
        for run_id in ("g1", "g2"):
            outcome = await runtime.run(greet, {}, run_id=run_id)
            assert outcome.ok and outcome.result == "hi", outcome.error
        third = await runtime.run(greet, {}, run_id="g3")
        assert not third.ok and third.error is not None
        assert third.error["type"].endswith("AgentTimeoutError"), third.error


def test_rate_limit_cli_sets_lists_clears_and_refuses_nonsense(tmp_path: Path, url: str) -> None:
    """rate-limit KEY RATE [--burst] sets, no argument lists (--json), --clear removes."""
    with workspace(tmp_path, url) as ws:
        assert ws.cli("rate-limit", "--json").stdout.strip() == "{}"
        assert ws.cli("rate-limit", "tool:search", "2.5", "--burst", "5").returncode == 0
        listed = ws.cli("rate-limit", "--json")
        assert listed.returncode == 0
        assert json.loads(listed.stdout) == {"tool:search": {"rate": 2.5, "burst": 5.0}}
        assert "tool:search: 2.5 a second, burst 5" in ws.cli("rate-limit").stdout
        for bad in (
            ("tool:search", "0"),
            ("tool:search", "-1"),
            ("tool:search",),
            ("tool:search", "2", "--clear"),
            ("tool:search", "2", "--burst", "0"),
            (" ", "2"),
            ("tool:search", "fast"),
        ):
            done = ws.cli("rate-limit", *bad)
            assert done.returncode == 2 and "Traceback" not in done.stderr, (bad, done.stderr)
        assert json.loads(ws.cli("rate-limit", "--json").stdout) == {
            "tool:search": {"rate": 2.5, "burst": 5.0}
        }
        assert ws.cli("rate-limit", "tool:search", "--clear").returncode == 0
        assert json.loads(ws.cli("rate-limit", "--json").stdout) == {}
