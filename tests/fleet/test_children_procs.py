"""Child runs spread over real worker processes, and a worker SIGKILLed mid-child.

Every child's step records its effect, with the pid of the process that ran it, in
one external ledger; the journals are read back at the end.
"""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import poll_until, wait_exit, workspace
from tests.chaos.workflows import read_ledger
from tests.fleet.harness import Fleet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

TREE = "tests.fleet.workflows:tree"
LEASE_TTL = 2.0


def submit_tree(fleet: Fleet, ledger: str, width: int, seconds: float) -> None:
    inputs = {"ledger": ledger, "width": width, "seconds": seconds}
    done = fleet.ws.cli("submit", TREE, "--input", json.dumps(inputs), "--run-id", "p")
    assert done.returncode == 0, done.stderr


def tree_journals(fleet: Fleet, width: int, timeout: float) -> dict[str, list[dict[str, Any]]]:
    """Once the parent `p` completed: its journal and its children's, by run id."""
    poll_until(
        lambda: any(e["type"] == "RunCompleted" for e in fleet.ws.peek("p")),
        timeout,
        "the parent to complete",
        interval=0.25,
    )
    runs = ["p", *(f"p.1.c{i}" for i in range(width))]
    return {run_id: fleet.ws.peek(run_id) for run_id in runs}


def ledger_pids(ledger: str) -> dict[str, set[int]]:
    """Which processes ran each step."""
    pids: dict[str, set[int]] = {}
    for line in read_ledger(ledger):
        pids.setdefault(line["step"], set()).add(line["pid"])
    return pids


def test_two_worker_processes_both_run_children_of_one_fan_out(tmp_path: Path, url: str) -> None:
    """A fan-out of 8 child runs under 2 workers: each worker ran some, each once."""
    ledger = str(tmp_path / "ledger")
    with workspace(tmp_path, url) as ws:
        fleet = Fleet(ws, LEASE_TTL)
        submit_tree(fleet, ledger, width=8, seconds=0.5)
        a = fleet.worker("a", "--concurrency", "2")
        b = fleet.worker("b", "--concurrency", "2")
        journals = tree_journals(fleet, 8, 120)
        for proc in (a, b):
            proc.popen.send_signal(signal.SIGTERM)
            assert wait_exit(proc, 60) == 0, proc.describe()
    result = next(e for e in journals["p"] if e["type"] == "RunCompleted")["data"]["result"]
    assert result == {f"c{i}": "succeeded" for i in range(8)}
    pids = ledger_pids(ledger)
    children = {step: ran for step, ran in pids.items() if step.startswith("c")}
    assert len(children) == 8 and all(len(ran) == 1 for ran in children.values())
    ran_by = Counter(next(iter(ran)) for ran in children.values())
    assert set(ran_by) == {a.popen.pid, b.popen.pid}, ran_by  # both workers ran children
    for run_id, events in journals.items():
        if run_id != "p":  # claimed once each, never taken over
            assert {e["epoch"] for e in events[1:]} == {1}, run_id


def test_a_worker_killed_mid_child_is_taken_over_and_the_parent_gets_the_outcome(
    tmp_path: Path, url: str
) -> None:
    """A SIGKILLed while running B's parent's children: B takes them over, none re-run done."""
    ledger = str(tmp_path / "ledger")
    with workspace(tmp_path, url) as ws:
        fleet = Fleet(ws, LEASE_TTL)
        submit_tree(fleet, ledger, width=4, seconds=1.5)
        b = fleet.worker("b", "--concurrency", "1")
        # B claimed the parent, queued its children, handed the parent back and now
        # runs a child: the rest wait for a slot.
        poll_until(lambda: read_ledger(ledger), 60, "B to run a child")
        a = fleet.worker("a", "--concurrency", "3")
        poll_until(
            lambda: a.popen.pid in {line["pid"] for line in read_ledger(ledger)},
            60,
            "A to run a child",
        )
        a.popen.kill()
        a.popen.wait()
        journals = tree_journals(fleet, 4, 180)
        b.popen.send_signal(signal.SIGTERM)
        assert wait_exit(b, 60) == 0, b.describe()
    result = next(e for e in journals["p"] if e["type"] == "RunCompleted")["data"]["result"]
    assert result == {f"c{i}": "succeeded" for i in range(4)}
    lines = read_ledger(ledger)
    taken_over = 0
    for i in range(4):
        events = journals[f"p.1.c{i}"]
        assert [e["type"] for e in events].count("StepCompleted") == 1
        ran = [line for line in lines if line["step"] == f"c{i}"]
        assert len({line["key"] for line in ran}) == 1  # a repeat reuses the key
        if a.popen.pid in {line["pid"] for line in ran}:
            # A died in it: B took it over (a larger epoch) and ran the step once more.
            taken_over += 1
            assert len(ran) == 2 and ran[-1]["pid"] == b.popen.pid, ran
            assert events[-1]["epoch"] > min(e["epoch"] for e in events if e["epoch"])
        else:
            assert len(ran) == 1, ran
    assert taken_over >= 1
    assert [line["step"] for line in lines].count("after") == 1


def children_waiting(fleet: Fleet, width: int) -> bool:
    journals = [fleet.ws.peek(f"p.1.c{i}") for i in range(width)]
    return all(any(e["type"] == "SignalWaiting" for e in j) for j in journals)


def test_cancelling_a_parent_cancels_its_children_on_other_workers(
    tmp_path: Path, url: str
) -> None:
    """`phalanx cancel` of a parent: its children, parked on two workers, end cancelled."""
    with workspace(tmp_path, url) as ws:
        fleet = Fleet(ws, LEASE_TTL)
        inputs = {"ledger": str(tmp_path / "ledger"), "width": 4, "hold": True}
        done = ws.cli("submit", TREE, "--input", json.dumps(inputs), "--run-id", "p")
        assert done.returncode == 0, done.stderr
        a = fleet.worker("a", "--concurrency", "2")
        b = fleet.worker("b", "--concurrency", "2")
        poll_until(lambda: children_waiting(fleet, 4), 60, "every child to wait", interval=0.25)
        assert ws.cli("cancel", "p").returncode == 0
        runs = ["p", *(f"p.1.c{i}" for i in range(4))]
        poll_until(
            lambda: all(ws.peek(r)[-1]["type"] == "RunCancelled" for r in runs),
            60,
            "the parent and every child to end cancelled",
            interval=0.25,
        )
        for proc in (a, b):
            proc.popen.send_signal(signal.SIGTERM)
            assert wait_exit(proc, 60) == 0, proc.describe()
        for run_id in runs[1:]:
            reason = ws.peek(run_id)[-1]["data"]["reason"]
            assert reason.startswith("parent cancelled"), (run_id, reason)


def test_children_on_other_workers_are_stopped_at_the_parents_deadline(
    tmp_path: Path, url: str
) -> None:
    """A fan-out with a 2 s deadline: children parked on other workers end at it."""
    with workspace(tmp_path, url) as ws:
        fleet = Fleet(ws, LEASE_TTL)
        inputs = {"ledger": str(tmp_path / "ledger"), "width": 3, "hold": True, "deadline": 2.0}
        done = ws.cli("submit", TREE, "--input", json.dumps(inputs), "--run-id", "p")
        assert done.returncode == 0, done.stderr
        a = fleet.worker("a", "--concurrency", "1")
        b = fleet.worker("b", "--concurrency", "1")
        journals = tree_journals(fleet, 3, 90)
        for proc in (a, b):
            proc.popen.send_signal(signal.SIGTERM)
            assert wait_exit(proc, 60) == 0, proc.describe()
    result = next(e for e in journals["p"] if e["type"] == "RunCompleted")["data"]["result"]
    assert result == {f"c{i}": "timed_out" for i in range(3)}
    for i in range(3):
        events = journals[f"p.1.c{i}"]
        deadline_at = events[0]["data"]["deadline_at"]
        ended = events[-1]
        assert ended["type"] == "RunCancelled" and "deadline" in ended["data"]["reason"]
        assert datetime.fromisoformat(ended["timestamp"]).timestamp() >= deadline_at
