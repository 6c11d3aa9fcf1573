"""The dead-letter queue: a waiting run resumed by retry, resolve or discard, exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import phalanx
from phalanx.journal import NewEvent
from phalanx.tools import DeadLetterEntry, DeadLetterQueue
from tests.tools import workflows as wf
from tests.tools.helpers import of_type, until_status

ROOT = Path(__file__).resolve().parents[2]
PHALANX = str(Path(sys.executable).with_name("phalanx"))


def cli(url: str, *args: str, fault: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `phalanx ARGS --store URL` in the repository, as an operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    env["PYTHONPATH"] = str(ROOT)
    if fault is not None:
        env[wf.FAULT_ENV] = str(fault)
    return subprocess.run(
        [PHALANX, *args, "--store", url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def waiting_entry(runtime: phalanx.Runtime, run_id: str) -> DeadLetterEntry:
    """Wait until the run waits on the DLQ; return its entry."""
    await until_status(runtime, run_id, "waiting")
    [entry] = await DeadLetterQueue(runtime).entries(run_id=run_id)
    assert entry.waiting and entry.tool == "gateway"
    return entry


@pytest.fixture
def fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The gateway's fault, switched on: delete the file to fix it."""
    path = tmp_path / "gateway-down"
    path.touch()
    monkeypatch.setenv(wf.FAULT_ENV, str(path))
    return path


@pytest.mark.slow
async def test_dlq_retry_after_the_fault_is_fixed_completes_the_waiting_run(
    runtime: phalanx.Runtime, url: str, fault: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`phalanx dlq retry` in another process runs the call again; the waiting run completes."""
    monkeypatch.setenv("COLUMNS", "80")
    async with asyncio.TaskGroup() as group:
        run = group.create_task(runtime.run(wf.charge_flow, {"order": "o-9"}, run_id="w"))
        entry = await waiting_entry(runtime, "w")
        assert wf.CALLS["gateway"] == 2
        listed = await asyncio.to_thread(cli, url, "dlq", "list", "--json")
        assert [(e["status"], e["waiting"]) for e in json.loads(listed.stdout)] == [("open", True)]
        table = await asyncio.to_thread(cli, url, "dlq", "list")
        [row] = [line.split() for line in table.stdout.splitlines() if entry.id in line]
        assert row[1:6] == [entry.id, "│", "open", "(run", "waits)"], table.stdout
        assert max(len(line) for line in table.stdout.splitlines()) <= 80, table.stdout

        still_down = await asyncio.to_thread(cli, url, "dlq", "retry", entry.id, fault=fault)
        assert still_down.returncode == 1, still_down.stderr
        assert "payment gateway unreachable" in still_down.stderr
        # The run made attempts 1 and 2: the retry's attempts go on from there.
        assert "attempt 4 failed" in still_down.stderr, still_down.stderr
        assert (await DeadLetterQueue(runtime).get(entry.id)).status == "open"

        await asyncio.to_thread(fault.unlink)  # the gateway is back
        fixed = await asyncio.to_thread(
            cli, url, "dlq", "retry", entry.id, "--by", "alice", "--reason", "gateway back",
            "--json", fault=fault,
        )  # fmt: skip
        assert fixed.returncode == 0, fixed.stderr
        shown = json.loads(fixed.stdout)
        assert shown["status"] == "resolved" and shown["closed_by"] == "alice"
    outcome = run.result()
    assert outcome.ok, outcome.error
    assert outcome.result == {"charged": {"order": "o-9", "charged": 42}}
    assert wf.CALLS["gateway"] == 2, "the retries ran in the CLI process, not here again"
    entry = await DeadLetterQueue(runtime).get(entry.id)
    assert [a["action"] for a in entry.actions] == ["retry_failed", "retried"]
    failed, retried = entry.actions
    assert failed["attempts"][0]["error_type"] == "ConnectionError" and failed["by"]
    assert [a["attempt"] for a in failed["attempts"]] == [3, 4]
    assert [a["attempt"] for a in retried["attempts"]] == [5]
    assert retried["by"] == "alice" and retried["reason"] == "gateway back"
    [received] = of_type((await runtime.history("w")).events, "SignalReceived")
    assert received.data["data"]["action"] == "retried"


async def test_dlq_resolve_with_a_manual_result(runtime: phalanx.Runtime, fault: Path) -> None:
    """A person's result resumes the run; the action is journaled with who and why."""
    queue = DeadLetterQueue(runtime)
    async with asyncio.TaskGroup() as group:
        run = group.create_task(runtime.run(wf.charge_flow, {}, run_id="w"))
        entry = await waiting_entry(runtime, "w")
        manual = {"order": "o-1", "charged": 40, "note": "by phone"}
        resolved = await queue.resolve(entry.id, manual, by="bob", reason="charged by phone")
        assert resolved.status == "resolved"
    outcome = run.result()
    assert outcome.ok and outcome.result == {"charged": manual}
    entry = await queue.get(entry.id)
    assert entry.resolution is not None
    assert entry.resolution["by"] == "bob" and entry.resolution["reason"] == "charged by phone"
    assert await queue.entries() == [] and len(await queue.entries(status="resolved")) == 1
    with pytest.raises(phalanx.DeadLetterClosedError, match="already resolved"):
        await queue.discard(entry.id, reason="too late")


async def test_dlq_discard_resumes_the_run_with_the_tool_unavailable(
    runtime: phalanx.Runtime, fault: Path
) -> None:
    """Discarding gives the waiting run a typed unavailable result carrying the reason."""
    async with asyncio.TaskGroup() as group:
        run = group.create_task(runtime.run(wf.charge_flow, {}, run_id="w"))
        entry = await waiting_entry(runtime, "w")
        await DeadLetterQueue(runtime).discard(entry.id, reason="order cancelled", by="carol")
    unavailable = run.result().result["unavailable"]
    assert unavailable["reason"] == "discarded" and unavailable["dead_letter_id"] == entry.id
    assert "carol discarded it: order cancelled" in unavailable["message"]


async def test_waiting_run_resumes_after_every_process_stopped(open_rt: Any, fault: Path) -> None:
    """A run whose runner stopped while waiting continues from the journal once resolved."""
    async with open_rt() as runtime, asyncio.TaskGroup() as group:
        task = group.create_task(runtime.run(wf.charge_flow, {}, run_id="w"))
        entry = await waiting_entry(runtime, "w")
        task.cancel()  # the runner goes away; the run stays resumable
    assert task.cancelled()
    async with open_rt() as runtime:
        await DeadLetterQueue(runtime).resolve(entry.id, {"manual": True})
        outcome = await runtime.resume("w", force=True)
    assert outcome.ok and outcome.result == {"charged": {"manual": True}}
    assert wf.CALLS["gateway"] == 2, "resuming does not call the tool again"


async def test_lost_signal_is_sent_again_when_the_entry_is_acted_on_again(
    runtime: phalanx.Runtime, fault: Path
) -> None:
    """An entry closed without its signal (a crash in between) re-sends it when touched."""
    queue = DeadLetterQueue(runtime)
    async with asyncio.TaskGroup() as group:
        run = group.create_task(runtime.run(wf.charge_flow, {}, run_id="w"))
        entry = await waiting_entry(runtime, "w")
        # Closed as `resolve` closes it, but the process died before the signal.
        closing = {
            "by": "dave",
            "reason": None,
            "result": {"late": 1},
            "at": 0.0,
            "tool": "gateway",
        }
        await runtime.store.append(
            f"dlq:{entry.id}", [NewEvent("DeadLetterResolved", closing, indexed=True)]
        )
        with pytest.raises(phalanx.DeadLetterClosedError):
            await queue.resolve(entry.id, {"other": 2}, by="erin")
    assert run.result().result == {"charged": {"late": 1}}


async def test_unknown_entry_is_a_usage_error(runtime: phalanx.Runtime) -> None:
    """Acting on an id the store has never seen raises UnknownDeadLetterError."""
    with pytest.raises(phalanx.UnknownDeadLetterError, match="dlq list"):
        await DeadLetterQueue(runtime).resolve("nope", 1)
