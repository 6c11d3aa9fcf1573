"""A run waiting on the dead-letter queue survives SIGKILL and resumes after `dlq resolve`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import phalanx
from tests.tools import workflows as wf

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PHALANX = str(Path(sys.executable).with_name("phalanx"))


def status_of(url: str, run_id: str) -> str | None:
    """The run's status, read in-process (cheaper than a CLI start-up per poll)."""

    async def read() -> str | None:
        async with phalanx.open_runtime(url) as runtime:
            rows = {r.run_id: r.status for r in await runtime.runs()}
        return rows.get(run_id)

    return asyncio.run(read())


def test_a_run_waiting_on_the_dlq_survives_sigkill_and_resumes_after_resolve(
    tmp_path: Path, url: str
) -> None:
    """SIGKILL the waiting runner; `dlq resolve` then `resume` completes it with the result."""
    fault = tmp_path / "gateway-down"
    fault.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **{wf.FAULT_ENV: str(fault)})

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PHALANX, *args, "--store", url],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    log = (tmp_path / "runner.log").open("w")
    runner = subprocess.Popen(
        [
            PHALANX, "run", "tests.tools.workflows:charge_flow", "--input", '{"order": "o-7"}',
            "--run-id", "k", "--store", url, "--lease-ttl", "1",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=log,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while status_of(url, "k") != "waiting":
            assert runner.poll() is None, (tmp_path / "runner.log").read_text()
            assert time.monotonic() < deadline, "the run never started waiting on the DLQ"
            time.sleep(0.05)
        runner.send_signal(signal.SIGKILL)
    finally:
        runner.wait(timeout=10)
        log.close()
    assert runner.returncode == -signal.SIGKILL
    assert status_of(url, "k") == "waiting", "a killed run keeps its status"

    listed = cli("dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = json.loads(listed.stdout)
    assert entry["waiting"] and entry["run_id"] == "k" and entry["attempts"] == 2

    manual = {"order": "o-7", "charged": 42, "via": "manual"}
    resolved = cli(
        "dlq", "resolve", entry["id"], "--result", json.dumps(manual),
        "--by", "ops", "--reason", "charged by hand", "--json",
    )  # fmt: skip
    assert resolved.returncode == 0, resolved.stderr
    assert json.loads(resolved.stdout)["resolution"]["by"] == "ops"
    assert "phalanx resume k" in resolved.stderr

    resumed = cli("resume", "k", "--json")
    assert resumed.returncode == 0, resumed.stderr
    outcome = json.loads(resumed.stdout)
    assert outcome["status"] == "completed" and outcome["result"] == {"charged": manual}
    events = [json.loads(line) for line in cli("events", "k", "--json").stdout.splitlines()]
    starts = [
        e for e in events if e["type"] == "StepStarted" and e["data"]["name"] == "tool/gateway"
    ]
    assert len(starts) == 2, "the tool was not called again after the resume"
    [received] = [e for e in events if e["type"] == "SignalReceived"]
    assert received["data"]["data"]["action"] == "resolved"
