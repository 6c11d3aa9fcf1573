"""`phalanx submit`, `worker` and `workers` as a user runs them, on every store."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.chaos.harness import poll_until, wait_exit, workspace
from tests.chaos.workflows import read_ledger

STEPS = "tests.fleet.workflows:steps"


def test_submit_prints_the_id_and_runs_nothing(tmp_path: Path, url: str) -> None:
    """submit exits 0 with the run id on stdout; the run is recorded, not executed."""
    ledger = str(tmp_path / "ledger")
    with workspace(tmp_path, url) as ws:
        done = ws.cli("submit", STEPS, "--input", json.dumps({"ledger": ledger}), "--run-id", "s1")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "s1"
        assert [e["type"] for e in ws.events("s1")] == ["RunStarted"]
        listed = json.loads(ws.cli("runs", "--json").stdout)
        assert [(r["run_id"], r["status"]) for r in listed] == [("s1", "running")]
        again = ws.cli("submit", STEPS, "--input", json.dumps({"ledger": ledger}), "--run-id", "s1")
        assert again.returncode == 2 and "Traceback" not in again.stderr
    assert read_ledger(ledger) == []


def test_submit_refuses_bad_input_like_run(tmp_path: Path, url: str) -> None:
    """Inputs that do not fit the workflow, or no such workflow: exit 2, one line, no run."""
    with workspace(tmp_path, url) as ws:
        for args in (
            ("tests.fleet.workflows:needs_arg",),
            ("tests.fleet.workflows:needs_arg", "--input", '{"nope": 1}'),
            ("tests.fleet.workflows:needs_arg", "--input", "[1]"),
            ("tests.fleet.workflows:missing",),
            ("tests.fleet.workflows:needs_arg", "--input", '{"topic": "x"}', "--queue", " "),
        ):
            done = ws.cli("submit", *args)
            assert done.returncode == 2, (args, done.stderr)
            assert done.stderr.startswith("error:") and "Traceback" not in done.stderr
        assert json.loads(ws.cli("runs", "--json").stdout) == []


def test_worker_refuses_bad_options(tmp_path: Path, url: str) -> None:
    """A worker with no room or a bad poll is a usage error (exit 2), not a hang."""
    with workspace(tmp_path, url) as ws:
        for args in (("--concurrency", "0"), ("--poll", "0"), ("--queue", "")):
            done = ws.cli("worker", *args, timeout=60)
            assert done.returncode == 2, (args, done.stderr)
            assert "Traceback" not in done.stderr


def test_a_worker_process_runs_submissions_lists_itself_and_drains_on_sigterm(
    tmp_path: Path, url: str
) -> None:
    """Submitted runs complete under `phalanx worker`; `workers` lists it; SIGTERM exits 0."""
    ledger = str(tmp_path / "ledger")
    with workspace(tmp_path, url) as ws:
        ids = []
        for _ in range(3):
            done = ws.cli("submit", STEPS, "--input", json.dumps({"ledger": ledger}))
            assert done.returncode == 0, done.stderr
            ids.append(done.stdout.strip())
        worker = ws.spawn_cli("worker", "--concurrency", "2", "--poll", "0.1", label="worker")

        def finished() -> bool:
            runs = json.loads(ws.cli("runs", "--json").stdout)
            return all(r["status"] == "completed" for r in runs)

        poll_until(finished, 60, "the submitted runs to complete", interval=0.3)
        listed = json.loads(ws.cli("workers", "--json").stdout)
        assert [w["pid"] for w in listed] == [worker.popen.pid]
        assert set(listed[0]) >= {"worker_id", "host", "pid", "queues", "runs", "last_seen"}
        worker.popen.send_signal(signal.SIGTERM)
        assert wait_exit(worker, 60) == 0, worker.describe()
        assert "Traceback" not in worker.stderr
        assert json.loads(ws.cli("workers", "--json").stdout) == []
    assert len(read_ledger(ledger)) == 9


def test_queue_limit_sets_lists_clears_and_refuses_nonsense(tmp_path: Path, url: str) -> None:
    """queue-limit QUEUE N sets, no argument lists (--json), --clear removes; N < 1 is exit 2."""
    with workspace(tmp_path, url) as ws:
        assert ws.cli("queue-limit", "gpu", "2").returncode == 0
        listed = ws.cli("queue-limit", "--json")
        assert listed.returncode == 0 and json.loads(listed.stdout) == {"gpu": 2}
        for bad in (("gpu", "0"), ("gpu",), ("gpu", "2", "--clear")):
            done = ws.cli("queue-limit", *bad)
            assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert ws.cli("queue-limit", "gpu", "--clear").returncode == 0
        assert json.loads(ws.cli("queue-limit", "--json").stdout) == {}
