"""`phalanx demo budget` end to end: real processes, both stores, the JSON contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import one_backend
from tests.demo.test_demo import Cli, types

pytestmark = pytest.mark.slow


@pytest.fixture
def cli(tmp_path: Path, url: str) -> Cli:
    """`phalanx` on a fresh store of this test (each backend in turn)."""
    return Cli(tmp_path, url)


def test_the_budget_demo_completes_within_budget_and_shows_where_it_summarised(cli: Cli) -> None:
    """Completed; the largest context is within the budget; it summarised and refused."""
    summary = cli.json("demo", "budget", "--json")
    for key in ("run_id", "status", "budget_tokens", "max_context_tokens", "summaries"):
        assert key in summary, key
    assert summary["status"] == "completed"
    assert 0 < summary["max_context_tokens"] <= summary["budget_tokens"]
    assert summary["summaries"] > 0 and summary["rejected_payloads"] >= 1
    journal = types(cli.events(summary["run_id"]))
    assert "ContextSummarized" in journal and "BudgetActionTaken" in journal
    runs = {r["run_id"]: r for r in cli.json("runs", "--json")}
    assert runs[summary["run_id"]]["status"] == "completed"


@one_backend
def test_the_budget_demo_refuses_options_it_does_not_have(cli: Cli) -> None:
    """--fault and --style are usage errors here: exit 2, no traceback."""
    for option in (["--fault", "chatty=hang"], ["--style", "x"]):
        done = cli("demo", "budget", *option, "--json")
        assert done.returncode == 2 and "not an option of the budget demo" in done.stderr
        assert "Traceback" not in done.stderr
