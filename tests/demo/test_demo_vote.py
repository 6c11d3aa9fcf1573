"""`phalanx demo vote` end to end: real processes, both stores, the JSON contract of DESIGN.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import one_backend
from tests.demo.test_demo import Cli, types

pytestmark = pytest.mark.slow

REPLICAS = ["replica_1", "replica_2", "replica_3"]


@pytest.fixture
def cli(tmp_path: Path, url: str) -> Cli:
    """`phalanx` on a fresh store of this test (each backend in turn)."""
    return Cli(tmp_path, url)


def contract(summary: dict[str, Any]) -> None:
    """The keys DESIGN.md fixes, with their types."""
    for key in ("run_id", "status", "decision", "answer", "votes", "agreement", "disagreement"):
        assert key in summary, key
    assert list(summary["votes"]) == REPLICAS
    assert summary["decision"] in ("accepted", "escalated")
    assert isinstance(summary["disagreement"], bool)


def test_three_agreeing_replicas_accept_without_disagreement(cli: Cli) -> None:
    """No fault: every replica answers the same, accepted, agreement 1, no dissent event."""
    summary = cli.json("demo", "vote", "--json")
    contract(summary)
    assert summary["status"] == "completed" and summary["decision"] == "accepted"
    assert summary["answer"] == "Canberra" and summary["agreement"] == 1.0
    assert summary["disagreement"] is False
    assert "DisagreementDetected" not in types(cli.events(summary["run_id"]))


def test_one_wrong_replica_is_outvoted_and_the_disagreement_journaled(cli: Cli) -> None:
    """replica_2=wrong: the majority answer stands, disagreement true, event in the journal."""
    summary = cli.json("demo", "vote", "--fault", "replica_2=wrong", "--json")
    contract(summary)
    assert summary["status"] == "completed" and summary["decision"] == "accepted"
    assert summary["answer"] == "Canberra" and summary["disagreement"] is True
    assert summary["votes"]["replica_2"] != "Canberra"
    assert summary["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    [detected] = [e for e in cli.events(summary["run_id"]) if e["type"] == "DisagreementDetected"]
    assert detected["data"]["votes"] == summary["votes"]


def test_two_wrong_replicas_split_the_vote_and_the_run_waits_for_a_person(cli: Cli) -> None:
    """Two different wrong answers: escalated, printed as it parks, `runs` says waiting."""
    summary = cli.json("demo", "vote", "--fault", "replica_2=wrong,replica_3=wrong", "--json")
    contract(summary)
    assert summary["decision"] == "escalated" and summary["status"] == "waiting"
    assert summary["answer"] is None and summary["disagreement"] is True
    assert len(set(summary["votes"].values())) == 3
    runs = {r["run_id"]: r for r in cli.json("runs", "--json")}
    assert runs[summary["run_id"]]["status"] == "waiting"
    # A person answers; the resumed run completes with their answer.
    done = cli(
        "signal", summary["run_id"], "vote:capital", "--data", '{"answer": "Canberra", "by": "ada"}'
    )
    assert done.returncode == 0, done.stderr
    resumed = cli("resume", summary["run_id"], "--json")
    assert resumed.returncode == 0, resumed.stderr
    runs = {r["run_id"]: r for r in cli.json("runs", "--json")}
    assert runs[summary["run_id"]]["status"] == "completed"
    assert "VoteResolved" in types(cli.events(summary["run_id"]))


@one_backend
def test_a_bad_fault_is_a_usage_error(cli: Cli) -> None:
    """An unknown replica or fault kind exits 2 with the valid names, no traceback."""
    for fault in ("replica_9=wrong", "replica_1=hang", "nonsense"):
        done = cli("demo", "vote", "--fault", fault, "--json")
        assert done.returncode == 2, (fault, done.stderr)
        assert "replica_1, replica_2, replica_3" in done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
