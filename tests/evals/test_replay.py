"""Replay as regression: re-run a recorded run's inputs, score both, print the difference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import phalanx
from phalanx.demo import research
from phalanx.evals import assert_passes, evaluate, load_rubric

from ..cli.helpers import make_cli
from . import workflows as wf

RUBRIC = Path(__file__).parents[2] / "examples" / "rubrics" / "research.yaml"
JUDGED = {
    "rubric": "replayed",
    "criteria": [
        {"name": "no_loops", "evaluator": "step_repetition"},
        {
            "name": "honest",
            "evaluator": "judge",
            "threshold": 0.5,
            "params": {
                "instructions": "Is it honest?",
                "models": ["python:tests.evals.judges:fair"],
            },
        },
    ],
}


async def test_replay_scores_both_and_is_deterministic(runtime: phalanx.Runtime) -> None:
    """A replay is a new run linked to the eval run; two replays give the same difference."""
    original = (await runtime.run(wf.tool_error, {"admit": True})).run_id
    rubric = phalanx.evals.Rubric.from_data(JUDGED)
    first = await evaluate(runtime, rubric, [], replay_of=original)
    second = await evaluate(runtime, rubric, [], replay_of=original)
    assert first.replay is not None and second.replay is not None
    replayed = first.replay["replay"]
    assert first.replay["original"] == original and replayed == f"{first.eval_run_id}.replay"
    history = await runtime.history(replayed)
    assert history.parent_run_id == first.eval_run_id
    assert history.inputs == {"admit": True} and history.status == "completed"
    assert [r.run_id for r in first.runs] == [original, replayed]
    rows = {row["criterion"]: row for row in first.replay["criteria"]}
    assert rows["no_loops"]["delta"] == 0
    # The scripted judge prefers whatever it is shown first: asked in both orders, a tie.
    (pairwise,) = rows["honest"]["pairwise"]
    assert pairwise["orders"] == ["first", "second"] and pairwise["preferred"] == "tie"
    strip = lambda r: [{k: v for k, v in row.items()} for row in r.replay["criteria"]]  # noqa: E731
    assert strip(first) == strip(second)


async def test_assert_passes_helper(runtime: phalanx.Runtime) -> None:
    """The pytest helper passes a good run and raises AssertionError naming what failed."""
    good = (await runtime.run(wf.looping, {"loop": False})).run_id
    bad = (await runtime.run(wf.looping, {"loop": True})).run_id
    rubric = phalanx.evals.Rubric.from_data(
        {"rubric": "loops", "criteria": [{"name": "no_loops", "evaluator": "step_repetition"}]}
    )
    report = await assert_passes(runtime, rubric, good)
    assert report.passed
    with pytest.raises(AssertionError, match=rf"run {bad}: no_loops scored 0.0"):
        await assert_passes(runtime, rubric, [good, bad])
    await assert_passes(runtime, rubric, good, replay=True)


def test_cli_replay_prints_the_difference(url: str, tmp_path: Path) -> None:
    """`phalanx eval RUBRIC --replay RUN` re-runs the demo run and prints per-criterion deltas."""
    cli = make_cli(tmp_path, url)
    demo = cli("demo", "--fault", "none", "--json", timeout=120)
    assert demo.returncode == 0, demo.stderr
    run_id = json.loads(demo.stdout)["run_id"]
    replay = cli("eval", str(RUBRIC), "--replay", run_id, "--json", timeout=120)
    assert replay.returncode == 0, replay.stderr
    report = json.loads(replay.stdout)
    assert report["replay"]["original"] == run_id
    assert {row["criterion"] for row in report["replay"]["criteria"]} == {
        c.name for c in load_rubric(RUBRIC).criteria
    }
    assert all(row["delta"] == 0 for row in report["replay"]["criteria"])
    table = cli("eval", str(RUBRIC), "--replay", run_id, timeout=120)
    assert table.returncode == 0, table.stderr
    assert f"replay of {run_id} as " in table.stdout


async def test_research_demo_passes_in_process(runtime: phalanx.Runtime) -> None:
    """The research rubric passes the demo run, scored without writing anything."""
    outcome = await runtime.run(research, {})
    await assert_passes(runtime, RUBRIC, outcome.run_id)
