"""`phalanx demo saga` end to end: real processes, both stores, the JSON contract of DESIGN.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import one_backend
from tests.demo.test_demo import Cli

pytestmark = pytest.mark.slow

STEPS = ["research", "outline", "draft", "fact_check", "edit"]
STYLES = ["orchestrated", "choreographed"]


@pytest.fixture
def cli(tmp_path: Path, url: str) -> Cli:
    """`phalanx` on a fresh store of this test (each backend in turn)."""
    return Cli(tmp_path, url)


def contract(summary: dict[str, Any]) -> None:
    """The keys DESIGN.md fixes, with their types."""
    for key in ("run_id", "status", "steps", "compensations"):
        assert key in summary, key
    assert list(summary["steps"]) == STEPS
    assert set(summary["steps"].values()) <= {"completed", "failed", "compensated", "not_run"}
    assert summary["status"] in ("completed", "compensated")


@pytest.mark.parametrize("style", STYLES)
def test_without_a_fault_every_step_completes(cli: Cli, style: str) -> None:
    """No fault: five steps completed, nothing compensated, in either style."""
    summary = cli.json("demo", "saga", "--style", style, "--json")
    contract(summary)
    assert summary["status"] == "completed"
    assert summary["steps"] == dict.fromkeys(STEPS, "completed")
    assert summary["compensations"] == []
    completed = [
        e["data"]["name"] for e in cli.events(summary["run_id"]) if e["type"] == "StepCompleted"
    ]
    assert [n for n in completed if n in STEPS] == STEPS


@pytest.mark.parametrize("style", STYLES)
def test_a_failing_fact_check_is_compensated_in_reverse(cli: Cli, style: str) -> None:
    """--fault fact_check=error: draft, outline, research undone in that order; edit not run."""
    summary = cli.json("demo", "saga", "--style", style, "--fault", "fact_check=error", "--json")
    contract(summary)
    assert summary["status"] == "compensated"
    assert summary["compensations"] == ["draft", "outline", "research"]
    assert summary["steps"] == {
        "research": "compensated",
        "outline": "compensated",
        "draft": "compensated",
        "fact_check": "failed",
        "edit": "not_run",
    }
    events = cli.events(summary["run_id"])
    for kind in ("CompensationStarted", "CompensationCompleted"):
        names = [e["data"]["name"] for e in events if e["type"] == kind]
        assert names == ["draft", "outline", "research"], kind
    for event in events:
        for key in ("seq", "type", "data", "epoch", "timestamp"):
            assert key in event
    shown = cli.json("show", summary["run_id"], "--json")
    [saga] = shown["sagas"]
    assert (saga["style"], saga["status"]) == (style, "compensated")
    assert saga["compensations"] == summary["compensations"]
    runs = {r["run_id"]: r for r in cli.json("runs", "--json")}
    assert runs[summary["run_id"]]["status"] == "completed"


@one_backend
def test_the_report_names_the_steps_and_the_order(cli: Cli) -> None:
    """Without --json: a table of outcomes, the order compensated and how to inspect it."""
    done = cli("demo", "saga", "--fault", "fact_check=error")
    assert done.returncode == 0, done.stderr
    assert "compensated, in order: draft, outline, research" in done.stdout
    assert "fact_check" in done.stdout and "not_run" in done.stdout
    assert "phalanx show" in done.stdout


@one_backend
@pytest.mark.parametrize(
    "args",
    [
        ["--fault", "fact_check=hang"],
        ["--fault", "review=error"],
        ["--style", "central"],
    ],
)
def test_bad_options_are_usage_errors(cli: Cli, args: list[str]) -> None:
    """An unknown fault, step or style: exit 2, a message, no traceback, no run."""
    done = cli("demo", "saga", *args, "--json")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert cli.json("runs", "--json") == []
