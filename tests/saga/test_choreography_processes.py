"""Choreography across two worker processes reacting to each other's events, one killed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

import phalanx
from phalanx.patterns import saga_views
from tests.chaos.harness import Proc, Workspace, poll_until, workspace
from tests.saga.workflows import effects, read, run_choreography

pytestmark = pytest.mark.slow


def serve(ws: Workspace, url: str, steps: str, label: str) -> Proc:
    """Start a process serving the participants of `steps`; return once it serves."""
    proc = ws.spawn(sys.executable, "-m", "tests.saga.participants", url, steps, label=label)
    poll_until(lambda: "serving" in proc.stdout or proc.popen.poll() is not None, 60, "serving")
    assert proc.popen.poll() is None, proc.describe()
    return proc


@pytest.mark.parametrize("fail", [None, "d"])
async def test_two_processes_one_killed_mid_saga(
    url: str, tmp_path: Path, fail: str | None
) -> None:
    """a and c in one process, b and d in another, killed while b runs: the saga still ends
    as it should, every step done (and undone) exactly once."""
    ledger = tmp_path / "ledger.jsonl"
    with workspace(tmp_path, url) as ws:
        serve(ws, url, "a,c", "odd")
        even = serve(ws, url, "b,d", "even")
        async with phalanx.open_runtime(url, lease_ttl=1.0) as runtime:
            inputs = {"ledger": str(ledger), "fail": fail, "slow": "b"}
            async with asyncio.TaskGroup() as group:
                run = group.create_task(runtime.run(run_choreography, inputs, run_id="ch"))
                await asyncio.to_thread(
                    poll_until, lambda: {"started": "b"} in read(ledger), 60, "b started"
                )
                even.popen.kill()  # SIGKILL mid-step: b acted, nothing of it committed
                even.popen.wait()
                await asyncio.to_thread(serve, ws, url, "b,d", "even-again")
                async with asyncio.timeout(60):
                    outcome = await run
            history = await runtime.history("ch")
    done = ["do:a", "do:b", "do:c"]
    if fail is None:
        assert outcome.result["status"] == "completed"
        assert effects(ledger) == [*done, "do:d"]
    else:
        assert outcome.result["status"] == "compensated"
        assert outcome.result["compensations"] == ["c", "b", "a"]
        assert effects(ledger) == [*done, "undo:c", "undo:b", "undo:a"]
    assert [e for e in read(ledger) if e.get("started") == "b"] == [{"started": "b"}] * 2
    [view] = saga_views(history.events)
    assert view.style == "choreographed"
    assert view.status == ("completed" if fail is None else "compensated")
