"""`phalanx ui` pages for the patterns: sagas, votes and evals on the run page; memories.

Each test runs the real commands (a demo, `phalanx run`, `phalanx eval`) and the real
`phalanx ui` process over a real store (SQLite and PostgreSQL), and reads the pages
over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from phalanx.testing import load_recorded, read_recorded
from tests.chaos.harness import poll_until, workspace

from .server import ROOT, cli, dashboard, status_of

pytestmark = pytest.mark.slow


def demo(url: str, *args: str) -> dict[str, object]:
    """Run `phalanx demo ARGS --json`; its JSON result."""
    done = cli(url, "demo", *args, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_run_page_shows_each_saga_step_and_the_compensation_order(url: str) -> None:
    """The saga demo's run page: compensated status, steps' outcomes, undo order."""
    run = demo(url, "saga", "--fault", "fact_check=error")["run_id"]
    with dashboard(url) as server:
        status, _, page = server.request(f"/runs/{run}")
    assert status == 200
    assert re.search(r"Saga \S+ <span class=\"status status-compensated\">compensated", page)
    for step, outcome in (
        ("research", "compensated"),
        ("fact_check", "failed"),
        ("edit", "not_run"),
    ):
        assert re.search(rf'data-step="{step}"><td>{step}</td><td[^>]*>{outcome}<', page)
    assert "Compensation order: draft → outline → research" in page
    assert "failed at step <strong>fact_check</strong>" in page
    assert "Waiting for a person" not in page


def test_a_waiting_saga_links_the_dead_letter_entry_it_needs(url: str, tmp_path: Path) -> None:
    """A saga whose compensation is dead-lettered shows `waiting` and links to its entry."""
    inputs = {
        "saga": "pipeline",
        "ledger": str(tmp_path / "ledger.jsonl"),
        "fail": "c",
        "undo": {"b": "always"},
    }
    with workspace(tmp_path, url) as ws:
        ws.spawn_cli(
            "run", "tests.saga.workflows:run_saga", "--input", json.dumps(inputs),
            "--run-id", "wait1", label="run",
        )  # fmt: skip
        poll_until(lambda: status_of(url, "wait1") == "waiting", 90, "the saga waits")
        [failed] = [e for e in ws.events("wait1") if e["type"] == "CompensationFailed"]
        entry = failed["data"]["dead_letter_id"]
        with dashboard(url) as server:
            _, _, page = server.request("/runs/wait1")
            assert 'status-waiting">waiting' in page
            assert f'the compensation of b is dead-lettered as <a href="/dlq/{entry}">' in page
            status, _, entry_page = server.request(f"/dlq/{entry}")
            assert status == 200 and "wait1" in entry_page


def test_run_page_shows_votes_per_replica_and_the_dissenter(url: str) -> None:
    """A vote with one wrong replica: each replica's vote, the decision, the dissenter."""
    result = demo(url, "vote", "--fault", "replica_2=wrong")
    assert result["decision"] == "accepted"
    with dashboard(url) as server:
        _, _, page = server.request(f"/runs/{result['run_id']}")
    assert "<h2>Votes</h2>" in page and "accepted" in page
    assert "replicas disagreed" in page and "agreement 0.6667" in page
    assert re.search(
        r'data-replica="replica_1"><td>replica_1</td><td><code>&#34;Canberra&#34;', page
    )
    row = page[page.index('data-replica="replica_2"') :].split("</tr>")[0]
    assert "dissenter" in row and "Canberra" not in row
    assert "Escalation" not in page


def test_an_escalated_vote_shows_it_waits_for_a_person(url: str) -> None:
    """No majority: the vote escalates and the page says how a person answers."""
    result = demo(url, "vote", "--fault", "replica_2=wrong,replica_3=wrong")
    with dashboard(url) as server:
        _, _, page = server.request(f"/runs/{result['run_id']}")
    assert "Escalation: <strong>waiting for a person</strong>" in page
    assert f"phalanx signal {result['run_id']} vote:" in page


def test_run_page_shows_recorded_evals_with_each_criterion(url: str) -> None:
    """After `phalanx eval`, the scored run lists the rubric, scores and pass/fail."""
    asyncio.run(load_recorded(url, read_recorded(ROOT / "docs/pictures/research-run.jsonl")))
    rubric = ROOT / "examples" / "rubrics" / "research.yaml"
    done = cli(url, "eval", str(rubric), "--run", "research-demo", "--json")
    assert done.returncode in (0, 1), done.stderr
    with dashboard(url) as server:
        _, _, page = server.request("/runs/research-demo")
    assert "<h2>Evals</h2>" in page and "Rubric research" in page
    for criterion in ("completed", "result_shape", "retrieval_cites_documents"):
        assert f"<td>{criterion}</td>" in page
    assert re.search(r"(passed|FAILED)</span> · score [0-9.]+", page)


def test_memory_page_lists_versions_authors_and_diffs_linked_from_the_run(url: str) -> None:
    """The memory demo's run links its memory; the page has every version with its diff."""
    run = demo(url, "memory")["run_id"]
    name = f"demo-{run}-phalanx"
    with dashboard(url) as server:
        _, _, run_page = server.request(f"/runs/{run}")
        assert f'href="/memory/{name}"' in run_page
        status, _, page = server.request(f"/memory/{name}")
    assert status == 200 and f"Memory {name}" in page
    assert 'data-key="plan"' in page
    versions = re.findall(r'data-version="(\d+)"', page)
    assert versions and versions == sorted(versions, key=int, reverse=True)
    assert versions[-1] == "1"
    assert "agent_a" in page and "agent_b" in page and "refused compare-and-sets" in page
    # The diff of a version against the one before it (escaped in the page).
    assert "+++ v2" in page and "--- v1" in page and "+  &#34;agent_" in page


def test_memory_versions_are_paginated(url: str) -> None:
    """More versions than a page: the newest shown, older ones linked, values escaped."""
    done = cli(url, "run", "tests.web.webflows:many_writes", "--input", '{"n": 25}')
    assert done.returncode == 0, done.stderr
    with dashboard(url) as server:
        _, _, page = server.request("/memory/counter")
        assert re.findall(r'data-version="(\d+)"', page)[0] == "25"
        assert len(re.findall(r'data-version="', page)) == 20
        assert 'href="/memory/counter?key=n&amp;before=6"' in page
        assert "&lt;b&gt;bold&lt;/b&gt;" in page and "<b>bold" not in page  # escaped
        _, _, older = server.request("/memory/counter?key=n&before=6")
        assert re.findall(r'data-version="(\d+)"', older) == ["5", "4", "3", "2", "1"]


def test_unknown_memory_is_a_404_page(url: str) -> None:
    """A memory with no stream is a 404 page naming it, and the name is escaped."""
    with dashboard(url) as server:
        status, _, page = server.request("/memory/%3Cb%3Enope")
    assert status == 404 and "No such memory" in page
    assert "&lt;b&gt;nope" in page and "<b>nope" not in page
