"""`phalanx demo memory`: the lost-update scenario end to end, on every store."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest

from phalanx.journal import store_from_url
from phalanx.memory import memory_stream
from tests.conftest import one_backend
from tests.demo.test_demo import PHALANX, Cli, hermetic_env, types

pytestmark = pytest.mark.slow


def test_naive_writes_lose_updates_and_compare_and_set_loses_none(tmp_path: Path, url: str) -> None:
    """--json: naive.lost_updates > 0, phalanx.lost_updates == 0, phalanx.conflicts > 0."""
    cli = Cli(tmp_path, url)
    report = cli.json("demo", "memory", "--json")
    naive, phalanx = report["naive"], report["phalanx"]
    assert report["run_id"] and report["status"] == "completed"
    assert naive["writes"] == phalanx["writes"] == 6
    assert naive["lost_updates"] > 0
    assert naive["lost_updates"] == len(naive["lost"]) == 6 - len(naive["final"])
    assert phalanx["lost_updates"] == 0 and len(phalanx["final"]) == 6
    assert phalanx["conflicts"] > 0
    runs = {r["run_id"]: r for r in cli.json("runs", "--json")}
    assert runs[report["run_id"]]["status"] == "completed"
    children = [r for r in runs.values() if r["parent_run_id"] == report["run_id"]]
    assert len(children) == 4
    events = cli.events(f"{report['run_id']}.phalanx.agent_a")
    answered = [e["data"]["result"]["kind"] for e in events if e["type"] == "MemoryWriteAnswered"]
    assert "written" in answered
    assert "MemoryRead" in types(events)


@one_backend
def test_the_table_shows_both_outcomes(tmp_path: Path, url: str) -> None:
    """Without --json the two outcomes are printed side by side."""
    done = Cli(tmp_path, url)("demo", "memory")
    assert done.returncode == 0, done.stderr
    assert "lost updates" in done.stdout and "compare-and-set" in done.stdout
    assert "Traceback" not in done.stderr


@one_backend
def test_options_of_other_demos_are_usage_errors(tmp_path: Path, url: str) -> None:
    """--fault and --style are refused with exit 2 and no traceback."""
    for option in (["--fault", "agent_a=hang"], ["--style", "orchestrated"]):
        done = Cli(tmp_path, url)("demo", "memory", *option)
        assert done.returncode == 2, done.stderr
        assert "not an option of the memory demo" in done.stderr
        assert "Traceback" not in done.stderr


def test_a_killed_memory_demo_is_finished_by_resume(tmp_path: Path, url: str) -> None:
    """SIGKILL the demo mid-way; `phalanx resume --force` finishes it, losing nothing."""
    cli = Cli(tmp_path, url)
    demo = subprocess.Popen(
        [
            PHALANX,
            "demo",
            "memory",
            "--json",
            "--run-id",
            "mem",
            "--lease-ttl",
            "3",
            "--store",
            url,
        ],
        cwd=tmp_path,
        env=hermetic_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    async def naive_writes() -> int:
        store = store_from_url(url)
        await store.open()
        try:
            return await store.stream_version(memory_stream("demo-mem-naive"))
        finally:
            await store.close()

    try:
        deadline = time.monotonic() + 60
        while asyncio.run(naive_writes()) < 3:  # the plan, and agents' first writes
            assert demo.poll() is None, demo.communicate()
            assert time.monotonic() < deadline, "the demo never wrote"
            time.sleep(0.05)
        demo.send_signal(signal.SIGKILL)
    finally:
        demo.communicate()
    done = cli("resume", "mem", "--force", "--lease-ttl", "3", timeout=120)
    assert done.returncode == 0, done.stderr
    runs = {r["run_id"]: r for r in cli.json("runs", "--json")}
    assert runs["mem"]["status"] == "completed"
    [completed] = [e for e in cli.events("mem") if e["type"] == "RunCompleted"]
    result = completed["data"]["result"]
    assert result["phalanx"]["lost_updates"] == 0 and len(result["phalanx"]["final"]) == 6
    assert result["naive"]["writes"] == 6
