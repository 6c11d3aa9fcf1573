"""Eval results reach an OTLP receiver as GenAI `gen_ai.evaluation.result` events."""

from __future__ import annotations

from pathlib import Path

from tests.observe.helpers import ROOT, otel_env, phalanx_cli, run_workflow
from tests.observe.receiver import start_receiver

RUBRIC = str(ROOT / "examples" / "rubrics" / "research.yaml")


def test_eval_results_exported_as_genai_evaluation_events(tmp_path: Path, url: str) -> None:
    """`phalanx eval` exports one evaluation event per criterion, with score and label."""
    with start_receiver() as receiver:
        env = {**otel_env(tmp_path, receiver), "PHALANX_STORE": url}
        run_workflow("tests.evals.workflows:looping", "loops", env, loop=True)
        done = phalanx_cli("eval", RUBRIC, "--run", "loops", env=env)
        assert done.returncode == 1, done.stderr  # the looping run fails the rubric
        spans = receiver.wait_for(lambda s: any(x.name == "phalanx.eval research" for x in s))
    [span] = [s for s in spans if s.name == "phalanx.eval research"]
    assert span.attributes["phalanx.eval.rubric"] == "research"
    assert span.attributes["phalanx.eval.passed"] is False
    events = {
        a["gen_ai.evaluation.name"]: a for n, a in span.events if n == "gen_ai.evaluation.result"
    }
    assert set(events) >= {"completed", "no_loops", "partial_named"}
    loops = events["no_loops"]
    assert loops["gen_ai.evaluation.score.label"] == "fail"
    assert loops["gen_ai.evaluation.score.value"] == 0
    assert "3 times" in loops["gen_ai.evaluation.explanation"]
    assert loops["phalanx.run.id"] == "loops"
    assert events["completed"]["gen_ai.evaluation.score.label"] == "pass"
