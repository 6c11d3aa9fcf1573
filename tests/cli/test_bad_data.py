"""Bad data and a damaged store at the command line: one-line errors, never a traceback.

Each test runs the real `phalanx` command on SQLite and on PostgreSQL (a fresh schema).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import phalanx
from tests.conftest import PG_URL

pytestmark = pytest.mark.slow

PHALANX = str(Path(sys.executable).with_name("phalanx"))

WORKFLOWS = textwrap.dedent(
    """
    import os
    import signal

    import phalanx


    def poisoned_items(marker):
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # die mid-step, the first time
        return {"items": [{"text": "ok"}] * 3 + [{"text": "caf\\ud800"}]}


    def healthy(marker):
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return "fine"


    @phalanx.workflow
    async def poisoned(ctx, marker=""):
        return await ctx.step("fetch", poisoned_items, marker)


    @phalanx.workflow
    async def steady(ctx, marker=""):
        return await ctx.step("fetch", healthy, marker)


    @phalanx.workflow
    async def echo(ctx, topic):
        return await ctx.step("echo", lambda: topic)


    @phalanx.workflow
    async def big(ctx):
        return await ctx.step("fetch", lambda: "x" * 5_000_000)


    @phalanx.workflow
    async def waiter(ctx):
        return await ctx.wait_for_signal("approve", timeout=60)
    """
)


@dataclass
class Cli:
    root: Path
    store: str
    env: dict[str, str]

    def __call__(self, *args: str, store: str | None = None) -> subprocess.CompletedProcess[str]:
        argv = [PHALANX, *args, "--store", store or self.store]
        return subprocess.run(
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=60
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


def one_line_error(done: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """Exit `code`, an `error:` line on stderr naming the problem, and no traceback."""
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors, done.stderr
    for needle in needles:
        assert needle in done.stderr + done.stdout, (needle, done.stderr)


@pytest.fixture
def cli(tmp_path: Path, url: str) -> Cli:
    """`phalanx` on the test's store (tests/conftest.py `url`: each backend in turn)."""
    (tmp_path / "badflows.py").write_text(WORKFLOWS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    return Cli(tmp_path, url, env)


def steps(cli: Cli, run_id: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in cli.json("show", run_id)["steps"]}


def test_an_input_no_store_can_hold_is_refused_in_one_line(cli: Cli) -> None:
    """run --input with a lone surrogate: exit 2 naming $.topic; no run is created."""
    done = cli("run", "badflows:echo", "--input", '{"topic": "\\ud800"}', "--run-id", "r")
    one_line_error(done, 2, "$.topic", "lone surrogate")
    assert cli.json("runs") == []


def test_a_poisoned_step_fails_the_run_cleanly(cli: Cli) -> None:
    """The issue's poisoned step: the run fails in one line; show lists the step failed."""
    done = cli("run", "badflows:poisoned", "--run-id", "p")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "$.result.items[3].text" in done.stdout
    assert "unavailable" not in done.stdout + done.stderr
    assert steps(cli, "p")["fetch"]["status"] == "failed"
    assert cli.json("runs")[0]["status"] == "failed"


def test_resume_force_of_a_crashed_poisoned_run_fails_it_in_one_line(
    cli: Cli, tmp_path: Path
) -> None:
    """A run killed mid-step whose step now returns bad data: resume --force ends it failed."""
    marker = str(tmp_path / "died")
    crashed = cli("run", "badflows:poisoned", "--input", json.dumps({"marker": marker}),
                  "--run-id", "p")  # fmt: skip
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    done = cli("resume", "p", "--force")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "EventDataError" in done.stdout and "$.result.items[3].text" in done.stdout
    assert steps(cli, "p")["fetch"]["status"] == "failed"
    again = cli("resume", "p", "--force")  # ended: reports the same outcome, no traceback
    assert again.returncode == 1 and "Traceback" not in again.stderr


def test_recover_finishes_a_healthy_run_beside_a_poisoned_one(cli: Cli, tmp_path: Path) -> None:
    """recover: the poisoned crashed run fails cleanly and the healthy one completes."""
    for run_id, workflow in (("p", "poisoned"), ("h", "steady")):
        inputs = json.dumps({"marker": str(tmp_path / run_id)})
        crashed = cli("run", f"badflows:{workflow}", "--input", inputs, "--run-id", run_id,
                      "--lease-ttl", "1")  # fmt: skip
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    time.sleep(1.2)  # the dead runners' leases lapse
    done = cli("recover")
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    assert done.returncode == 1  # one recovered run failed
    statuses = {r["run_id"]: r["status"] for r in cli.json("runs")}
    assert statuses == {"p": "failed", "h": "completed"}


def test_a_signal_no_store_can_hold_is_refused_in_one_line(cli: Cli) -> None:
    """signal --data with a lone surrogate: exit 2 naming $.data; the run still waits."""
    waiter = subprocess.Popen(
        [PHALANX, "run", "badflows:waiter", "--run-id", "w", "--store", cli.store],
        cwd=cli.root, env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not any(r["status"] == "waiting" for r in cli.json("runs")):
            assert time.monotonic() < deadline, "the run never waited"
            time.sleep(0.1)
        one_line_error(cli("signal", "w", "approve", "--data", '"\\udfff"'), 2, "$.data")
        assert cli("signal", "w", "approve", "--data", '"yes"').returncode == 0
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 0, err
        assert '"yes"' in out
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()


def test_a_5_mb_step_result_fails_the_step_unless_the_url_raises_the_limit(cli: Cli) -> None:
    """5 MB result: PayloadTooLargeError, the step failed; ?max_payload_bytes= lets it through."""
    done = cli("run", "badflows:big", "--run-id", "b")
    assert done.returncode == 1 and "PayloadTooLargeError" in done.stdout, done.stdout
    assert "max_payload_bytes" in done.stdout
    assert steps(cli, "b")["fetch"]["status"] == "failed"
    sep = "&" if "?" in cli.store else "?"
    roomy = f"{cli.store}{sep}max_payload_bytes=6000000"
    assert cli("run", "badflows:big", "--run-id", "b2", store=roomy).returncode == 0


def test_events_prints_the_good_rows_and_names_the_broken_one(cli: Cli) -> None:
    """events on a run with one corrupt row: every good row printed, the bad one named."""
    assert cli("run", "badflows:echo", "--input", '{"topic": "t"}', "--run-id", "e").returncode == 0
    total = len(cli("events", "e", "--json").stdout.splitlines())
    asyncio.run(corrupt_row(cli.store, "run:e", 2))
    done = cli("events", "e", "--json")
    one_line_error(done, 1, "'run:e' seq 2")
    seqs = [json.loads(line)["seq"] for line in done.stdout.splitlines()]
    assert seqs == [s for s in range(1, total + 1) if s != 2]


async def corrupt_row(store: str, stream: str, seq: int) -> None:
    sql = "UPDATE events SET data = '{not json' WHERE stream_id = $1 AND seq = $2"
    if store.startswith("sqlite"):
        conn = sqlite3.connect(store.removeprefix("sqlite:///"), isolation_level=None)
        try:
            conn.execute(sql.replace("$1", "?").replace("$2", "?"), (stream, seq))
        finally:
            conn.close()
        return
    import asyncpg

    schema = store.rsplit("schema=", 1)[1]
    conn2 = await asyncpg.connect(PG_URL, server_settings={"search_path": schema})
    try:
        await conn2.execute(sql, stream, seq)
    finally:
        await conn2.close()


# -- a damaged SQLite file --------------------------------------------------------------


def damage(path: Path) -> str:
    """Write 8 KB of garbage into the middle of a checkpointed SQLite file; its new hash."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = secrets.token_bytes(8192)
    path.write_bytes(bytes(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()


@phalanx.workflow
async def note(ctx: phalanx.WorkflowContext, text: str) -> str:
    """A run with a bit of data, to fill the file the damage tests break."""
    return str(await ctx.step("note", lambda: text))


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A journal of 60 runs with 8 KB of garbage in the middle, and its hash."""
    db = tmp_path_factory.mktemp("damaged") / "journal.db"

    async def fill() -> None:
        async with phalanx.open_runtime(f"sqlite:///{db}") as runtime:
            for i in range(60):  # enough pages that the middle of the file is table data
                await runtime.run(note, {"text": "x" * 200}, run_id=f"r{i}")

    asyncio.run(fill())
    return db, damage(db)


@pytest.mark.parametrize(
    "command",
    [
        ("runs",),
        ("run", "badflows:echo", "--input", '{"topic": "new"}', "--run-id", "new"),
        ("show", "r0"),
        ("events", "r0"),
        ("resume", "r0", "--force"),
        ("recover",),
        ("signal", "r0", "approve"),
        ("cancel", "r0"),
    ],
)
def test_a_damaged_sqlite_file_is_reported_corrupt_and_never_written(
    tmp_path: Path, damaged: tuple[Path, str], command: tuple[str, ...]
) -> None:
    """8 KB of garbage mid-file: every command says StoreCorruptError and writes nothing."""
    (tmp_path / "badflows.py").write_text(WORKFLOWS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    db = tmp_path / "journal.db"
    shutil.copyfile(damaged[0], db)
    done = Cli(tmp_path, f"sqlite:///{db}", env)(*command)
    one_line_error(done, 1, "is corrupt")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == damaged[1]
    wal = db.with_name(db.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
