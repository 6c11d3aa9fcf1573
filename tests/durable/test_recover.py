"""recover(): finish every crashed run whose runner is gone, leave the rest alone."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import phalanx
from phalanx.durable import Recovery
from phalanx.journal import NewEvent
from tests.durable import workflows as wf
from tests.durable.helpers import crashes, reached, status

OpenRuntime = Callable[..., AbstractAsyncContextManager[phalanx.Runtime]]

TTL = 0.2


async def _lease_lapsed(runtime: phalanx.Runtime, run_id: str) -> None:
    lease = await runtime.store.get_lease(f"run:{run_id}")
    assert lease is not None
    # The passage of time is the behaviour under test: wait out the dead runner's lease.
    await runtime.clock.sleep(lease.expires_at - runtime.clock.now() + 0.01)


async def test_recover_resumes_crashed_runs_and_skips_finished_ones(
    open_rt: OpenRuntime,
) -> None:
    """recover() resumes a crashed run once its lease lapsed, and leaves finished runs be."""
    async with open_rt(lease_ttl=TTL) as dead:
        finished = await dead.run(wf.pipeline, {"n": 0}, run_id="done")
        wf.CRASH_AT.add("c")
        await crashes(dead.run(wf.pipeline, {"n": 1}, run_id="crashed"))
        await _lease_lapsed(dead, "crashed")

    async with open_rt(lease_ttl=TTL) as survivor:
        recovery = await survivor.recover()
        outcomes = recovery.outcomes
        assert [o.run_id for o in outcomes] == ["crashed"] and recovery.ok
        assert outcomes[0].ok and outcomes[0].result == {"a": 2, "b": 12, "c": 112}
        assert await status(survivor, "crashed") == "completed"
        assert await survivor.recover() == Recovery()
    assert finished.ok
    assert wf.CALLS == {"a": 2, "b": 2, "c": 3}  # "done" once each, "crashed": c again


async def test_recover_leaves_runs_with_a_live_lease_alone(open_rt: OpenRuntime) -> None:
    """recover() does not touch a run whose lease is still live (its runner may be alive)."""
    async with open_rt(lease_ttl=30) as dead:
        wf.CRASH_AT.add("c")
        await crashes(dead.run(wf.pipeline, {"n": 1}, run_id="crashed"))
    async with open_rt(lease_ttl=TTL) as other:
        assert await other.recover() == Recovery()
        assert await status(other, "crashed") == "running"
        assert wf.CALLS["c"] == 1


async def test_recover_leaves_child_runs_to_their_parent(open_rt: OpenRuntime) -> None:
    """recover() resumes a crashed parent (which resumes its child), never the child alone."""
    async with open_rt(lease_ttl=TTL) as dead:
        wf.CRASH_AT.add("c2")
        await crashes(dead.run(wf.parent, {"n": 5}, run_id="p"))
        await _lease_lapsed(dead, "p")
        await _lease_lapsed(dead, "p.2")
    async with open_rt(lease_ttl=TTL) as survivor:
        outcomes = (await survivor.recover()).outcomes
        assert [(o.run_id, o.result) for o in outcomes] == [("p", 1007)]
        assert await status(survivor, "p.2") == "completed"
    assert wf.CALLS == {"p1": 1, "c1": 1, "c2": 2, "p2": 1}


async def test_recover_parks_a_waiting_run_instead_of_waiting_on_it(
    open_rt: OpenRuntime,
) -> None:
    """A recovered run that waits for a signal is reported `waiting` and handed back."""
    import asyncio

    async with open_rt(lease_ttl=TTL) as dead:
        waiting = asyncio.ensure_future(dead.run(wf.approval, {}, run_id="waits"))
        await reached(dead, "waits", "SignalWaiting")
        waiting.cancel()  # the runner goes away (infrastructure), the run stays waiting
        await asyncio.gather(waiting, return_exceptions=True)
        wf.CRASH_AT.add("c")
        await crashes(dead.run(wf.pipeline, {"n": 1}, run_id="crashed"))
        await _lease_lapsed(dead, "crashed")

    async with open_rt(lease_ttl=30) as survivor:
        async with asyncio.timeout(10):
            recovery = await survivor.recover()  # returns without anyone signalling
        assert recovery.ok and recovery.failures == {}
        assert {(o.run_id, o.status) for o in recovery.outcomes} == {
            ("crashed", "completed"),
            ("waits", "waiting"),
        }
        history = await survivor.history("waits")
        assert history.status == "waiting" and history.events[-1].type == "RunInterrupted"
        lease = await survivor.store.get_lease("run:waits")
        assert lease is not None and lease.expires_at <= survivor.clock.now(), "handed back"
        await survivor.signal("waits", "approve", {"ok": True})
        async with asyncio.timeout(10):  # no 30 s lease to wait out
            resumed = await survivor.resume("waits")
    assert resumed.ok and resumed.result == {"ok": True}


async def test_recover_reports_a_run_it_cannot_resume_and_recovers_the_others(
    open_rt: OpenRuntime,
) -> None:
    """A run whose workflow no longer imports is listed with why; the others still recover."""
    async with open_rt(lease_ttl=TTL) as dead:
        wf.CRASH_AT.add("c")
        await crashes(dead.run(wf.pipeline, {"n": 1}, run_id="crashed"))
        await _lease_lapsed(dead, "crashed")
        await dead.store.append(  # a run of code that has since been deleted
            "run:orphan",
            [NewEvent("RunStarted", {"workflow": "gone_module:flow", "inputs": {}}, indexed=True)],
            expected_version=0,
        )
    async with open_rt(lease_ttl=TTL) as survivor:
        recovery = await survivor.recover()
    assert not recovery.ok
    assert [(o.run_id, o.status) for o in recovery.outcomes] == [("crashed", "completed")]
    assert list(recovery.failures) == ["orphan"]
    assert recovery.failures["orphan"]["type"] == "WorkflowImportError"
    assert "gone_module" in recovery.failures["orphan"]["message"]
    assert recovery.to_json()["failed"] == [
        {"run_id": "orphan", "error": recovery.failures["orphan"]}
    ]
