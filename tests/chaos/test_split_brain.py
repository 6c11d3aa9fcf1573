"""Chaos: a paused runner whose run was taken over cannot write when it wakes up.

Runner A is frozen with SIGSTOP mid-run (as a long GC pause, a suspended VM or a
network partition would), runner B takes the run over with `phalanx resume --force`
and finishes it, then A is thawed with SIGCONT. The store must refuse A's writes by
their stale epoch: A exits non-zero saying it was fenced, and the journal holds every
step's completion once, none of it written by A after the takeover.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest

from tests.chaos.harness import Proc, Workspace, poll_until, wait_exit, workspace
from tests.chaos.workflows import read_ledger

pytestmark = pytest.mark.slow

RUN_ID = "split"
STEPS = 10
STEP_SECONDS = 0.3


def holds_a_write_lock(url: str) -> bool:
    """Whether some connection holds the store's write lock (a frozen runner would).

    On SQLite that is the database's single write lock. On PostgreSQL it is a row lock
    on the position counter (every append) or on the run's lease row (lease writes),
    which a takeover must wait for.
    """
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(urlsplit(url).path[1:], timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
    return asyncio.run(_postgres_locked(url))


async def _postgres_locked(url: str) -> bool:
    import asyncpg

    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    conn = await asyncpg.connect(
        urlunsplit(parts._replace(query="")), server_settings={"search_path": query["schema"]}
    )
    try:
        async with conn.transaction():
            await conn.execute("SELECT 1 FROM phalanx_position FOR UPDATE NOWAIT")
            await conn.execute(
                "SELECT 1 FROM leases WHERE stream_id = $1 FOR UPDATE NOWAIT", f"run:{RUN_ID}"
            )
            raise _Free
    except _Free:
        return False
    except asyncpg.LockNotAvailableError:
        return True
    finally:
        await conn.close()


class _Free(Exception):
    """Rolls the probe's transaction back: it only wanted to see the locks were free."""


def freeze_outside_a_write(ws: Workspace, proc: Proc) -> None:
    """SIGSTOP `proc`, retrying until it is not frozen holding the store's write lock.

    A process frozen inside a write transaction would block every other writer (that
    is the store's write lock, not fencing), so the test makes sure the pause lands
    between two writes, where a real takeover would find it.
    """
    for _ in range(100):
        os.kill(proc.popen.pid, signal.SIGSTOP)
        if not holds_a_write_lock(ws.url):
            return
        os.kill(proc.popen.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("runner A always held the write lock")


def test_paused_runner_is_fenced_after_takeover(tmp_path: Path, url: str) -> None:
    """A SIGSTOPped runner taken over by `resume --force` is fenced on SIGCONT, writes nothing."""
    with workspace(tmp_path, url) as ws:
        ledger = str(tmp_path / "ledger.jsonl")
        inputs = {"ledger": ledger, "steps": STEPS, "seconds": STEP_SECONDS}
        runner_a = ws.spawn_cli(
            "run",
            "tests.chaos.workflows:slow_pipeline",
            "--input",
            json.dumps(inputs),
            "--run-id",
            RUN_ID,
            "--lease-ttl",
            "2",
            label="runner-a",
        )

        def completed_steps() -> int:
            return sum(e["type"] == "StepCompleted" for e in ws.peek(RUN_ID))

        poll_until(lambda: completed_steps() >= 2, 30, "runner A to complete two steps")
        freeze_outside_a_write(ws, runner_a)
        try:
            frozen = ws.peek(RUN_ID)
            epoch_a = frozen[-1]["epoch"]
            assert "RunCompleted" not in {e["type"] for e in frozen}
            runner_b = ws.spawn_cli(
                "resume", RUN_ID, "--force", "--lease-ttl", "2", "--json", label="runner-b"
            )
            assert wait_exit(runner_b, 30) == 0, runner_b.describe()
        finally:
            os.kill(runner_a.popen.pid, signal.SIGCONT)
        outcome = json.loads(runner_b.stdout)
        assert outcome["status"] == "completed"
        assert outcome["result"] == [f"s{i} done" for i in range(STEPS)]

        assert wait_exit(runner_a, 30) == 1, runner_a.describe()
        assert "fenced" in runner_a.stderr, runner_a.describe()

        events = ws.events(RUN_ID)
        assert events[: len(frozen)] == frozen, "the journal only grows"
        completions = Counter(e["data"]["name"] for e in events if e["type"] == "StepCompleted")
        assert completions == {f"s{i}": 1 for i in range(STEPS)}
        assert [e["type"] for e in events].count("RunCompleted") == 1
        takeover = next(i for i, e in enumerate(events) if e["epoch"] != epoch_a)
        assert takeover == len(frozen), "A wrote nothing while frozen or after"
        assert all(e["epoch"] > epoch_a for e in events[takeover:])

        keys: dict[str, list[str]] = defaultdict(list)
        for line in read_ledger(ledger):
            keys[line["step"]].append(line["key"])
        assert set(keys) == {f"s{i}" for i in range(STEPS)}
        assert all(len(set(k)) == 1 for k in keys.values()), "one idempotency key per step"
        twice = [step for step, k in keys.items() if len(k) > 1]
        assert len(twice) <= 1 and all(len(keys[s]) == 2 for s in twice), keys
