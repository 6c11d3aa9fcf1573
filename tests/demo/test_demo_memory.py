"""`phalanx demo memory`: the lost-update scenario end to end, on every store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import one_backend
from tests.demo.test_demo import Cli, types

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
