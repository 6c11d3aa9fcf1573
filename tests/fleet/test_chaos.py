"""Chaos on PostgreSQL with real worker processes: SIGKILL, SIGSTOP, a restarted
server and a clock 30 s ahead. Side effects are counted in external ledgers."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.chaos.harness import poll_until, wait_exit, workspace
from tests.conftest import PrivatePostgres
from tests.fleet.harness import Fleet, workers_listed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

#: Workers renew every third of it; takeovers wait for it to lapse.
LEASE_TTL = 2.0
postgres_only = pytest.mark.parametrize(
    "backend", [pytest.param("postgres", marks=pytest.mark.postgres)]
)


@postgres_only
def test_a_sigkilled_workers_runs_are_taken_over_and_no_completed_step_reruns(
    tmp_path: Path, url: str
) -> None:
    """Worker A SIGKILLed mid-step: B takes every run over after the lease lapses."""
    with workspace(tmp_path, url) as ws:
        fleet = Fleet(ws, LEASE_TTL)
        for i in range(4):
            fleet.submit(f"k{i}", count=6, seconds=0.3)
        a = fleet.worker("a", "--concurrency", "4")
        fleet.wait_effects(8)
        a.popen.kill()
        a.popen.wait()
        b = fleet.worker("b", "--concurrency", "4")
        journals = fleet.wait_completed(120)
        fleet.check_exactly_once(journals)
        fleet.check_fenced_after_takeover(journals)
        for run_id, events in journals.items():
            assert events[-1]["epoch"] == 2, run_id  # A held epoch 1, B took over
        b.popen.send_signal(signal.SIGTERM)
        assert wait_exit(b, 60) == 0, b.describe()


@postgres_only
def test_a_paused_worker_is_fenced_out_and_writes_nothing_more(tmp_path: Path, url: str) -> None:
    """A SIGSTOPped worker's runs finish elsewhere; SIGCONT: it is fenced, writes nothing."""
    with workspace(tmp_path, url) as ws:
        fleet = Fleet(ws, LEASE_TTL)
        for i in range(2):
            fleet.submit(f"p{i}", count=8, seconds=0.3)
        a = fleet.worker("a", "--concurrency", "2")
        fleet.wait_effects(4)
        a.popen.send_signal(signal.SIGSTOP)
        b = fleet.worker("b", "--concurrency", "2")
        journals = fleet.wait_completed(120)
        a.popen.send_signal(signal.SIGCONT)
        poll_until(
            lambda: a.stderr.count("fenced out") >= 2, 60, "A to find itself fenced", interval=0.2
        )
        time.sleep(1.0)  # room for any write A might still (wrongly) make
        after = fleet.journals()
        assert after == journals, "the paused worker wrote after it was taken over"
        fleet.check_exactly_once(after)
        fleet.check_fenced_after_takeover(after)
        for proc in (a, b):
            proc.popen.send_signal(signal.SIGTERM)
            assert wait_exit(proc, 60) == 0, proc.describe()
            assert "Traceback" not in proc.stderr


@pytest.mark.postgres
def test_workers_ride_out_a_postgres_restart_and_lose_nothing(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    """The server restarted mid-load: both workers reconnect, every run completes once."""
    schema = f"t_fleet_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    url = f"{private_postgres.url}?schema={schema}"
    try:
        with workspace(tmp_path, url) as ws:
            fleet = Fleet(ws, 6.0)  # outlasts the restart: runs continue where they are
            for i in range(6):
                fleet.submit(f"r{i}", count=6, seconds=0.2)
            workers = [fleet.worker(w, "--concurrency", "3") for w in ("a", "b")]
            fleet.wait_effects(6)
            restarted = private_postgres.ctl("restart")
            assert restarted.returncode == 0, restarted.stdout + restarted.stderr
            for i in range(6, 8):  # work submitted after the restart: claimed as well
                fleet.submit(f"r{i}", count=2, seconds=0.1)
            journals = fleet.wait_completed(180)
            fleet.check_exactly_once(journals)
            fleet.check_fenced_after_takeover(journals)
            poll_until(lambda: len(workers_listed(ws)) == 2, 60, "both workers to heartbeat")
            for proc in workers:
                proc.popen.send_signal(signal.SIGTERM)
                assert wait_exit(proc, 60) == 0, proc.describe()
                assert "Traceback" not in proc.stderr
    finally:
        private_postgres.ctl("start")  # a no-op unless the restart failed half-way
        _drop(private_postgres, schema)


def _drop(cluster: PrivatePostgres, schema: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(cluster.url)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


@postgres_only
def test_a_worker_whose_clock_runs_30s_ahead_takes_no_live_run(tmp_path: Path, url: str) -> None:
    """Lease expiry is the server's: a worker 30 s ahead waits for a live lease like others."""
    with workspace(tmp_path, url) as ws:
        fleet = Fleet(ws, LEASE_TTL)
        fleet.submit("live", count=8, seconds=0.3)
        a = fleet.worker("a")
        fleet.wait_effects(1)
        skewed = ws.spawn(
            sys.executable, "-m", "tests.fleet.skewed_worker", url, "30", str(LEASE_TTL),
            label="skewed",
        )  # fmt: skip
        poll_until(lambda: len(workers_listed(ws)) == 2, 60, "the skewed worker to register")
        journals = fleet.wait_completed(120)
        assert {e["epoch"] for e in journals["live"][1:]} == {1}, "a live lease was taken"
        # Now A dies: the skewed worker takes the next run over once its lease lapses.
        fleet.submit("orphan", count=6, seconds=0.3)
        poll_until(lambda: fleet.journals()["orphan"][-1]["epoch"] is not None, 30, "a claim")
        a.popen.kill()
        a.popen.wait()
        journals = fleet.wait_completed(120)
        fleet.check_exactly_once(journals)
        fleet.check_fenced_after_takeover(journals)
        skewed.popen.send_signal(signal.SIGTERM)
        assert wait_exit(skewed, 60) == 0, skewed.describe()
