"""LLM-as-judge in an eval run: journaled, repaired, bounded, deterministic, agreeing."""

from __future__ import annotations

from typing import Any

import pytest

import phalanx
from phalanx.evals import Rubric, cohen_kappa, evaluate

from ..models.fake_openai_server import FakeModelServer
from . import workflows as wf

JUDGES = "python:tests.evals.judges:"


def _rubric(*models: str, deadline_s: float = 20.0, threshold: float = 0.5) -> Rubric:
    return Rubric.from_data(
        {
            "rubric": "judged",
            "judge": {"deadline_s": deadline_s},
            "criteria": [
                {"name": "done", "evaluator": "status"},
                {
                    "name": "honest",
                    "description": "The answer admits what it does not know.",
                    "evaluator": "judge",
                    "threshold": threshold,
                    "params": {"instructions": "Does it admit failures?", "models": list(models)},
                    "examples": {"good": ["The tool failed, so ..."], "bad": ["It is sunny."]},
                },
            ],
        }
    )


async def _answered(runtime: phalanx.Runtime, admit: bool = True) -> str:
    return (await runtime.run(wf.tool_error, {"admit": admit})).run_id


async def _events(runtime: phalanx.Runtime, run_id: str, kind: str) -> list[dict[str, Any]]:
    history = await runtime.history(run_id)
    return [e.data for e in history.events if e.type == kind]


async def test_judge_journaled_in_eval_run(runtime: phalanx.Runtime) -> None:
    """The judge's prompt, raw output, score and reasoning are events of the eval run."""
    run_id = await _answered(runtime)
    report = await evaluate(runtime, _rubric(JUDGES + "fair"), [run_id])
    result = report.runs[0].result("honest")
    assert result.passed and result.score == pytest.approx(0.9)
    assert report.eval_run_id is not None
    started = await _events(runtime, report.eval_run_id, "JudgeStarted")
    assert "Does it admit failures?" in started[0]["prompt"]
    assert "The weather tool failed" in started[0]["prompt"]
    assert "Example of a bad output: It is sunny." in started[0]["prompt"]
    verdict = (await _events(runtime, report.eval_run_id, "JudgeVerdict"))[0]
    assert verdict["score"] == pytest.approx(0.9) and verdict["reasoning"] == "names the gap"
    assert verdict["raw_output"] == '{"score": 0.9, "reasoning": "names the gap"}'


async def test_garbage_judge_repaired_then_clear_failure(runtime: phalanx.Runtime) -> None:
    """Prose is repaired by re-asking; garbage twice fails the criterion with the raw output."""
    run_id = await _answered(runtime)
    fixed = await evaluate(runtime, _rubric(JUDGES + "repaired"), [run_id])
    assert fixed.runs[0].result("honest").score == pytest.approx(0.8)
    report = await evaluate(runtime, _rubric(JUDGES + "garbage"), [run_id])
    result = report.runs[0].result("honest")
    assert not result.passed and result.score is None
    assert "invalid after repair" in result.detail
    assert "its raw output: 'lol no json here'" in result.detail
    off = await evaluate(runtime, _rubric(JUDGES + "off_scale"), [run_id])
    assert "less than or equal to 1" in off.runs[0].result("honest").detail


async def test_hanging_judge_hits_its_deadline(runtime: phalanx.Runtime) -> None:
    """A judge that never answers fails the criterion at its deadline; the eval run ends."""
    run_id = await _answered(runtime)
    report = await evaluate(runtime, _rubric(JUDGES + "hanging", deadline_s=0.5), [run_id])
    result = report.runs[0].result("honest")
    assert not result.passed and "no verdict within its deadline (0.5s)" in result.detail
    assert not report.passed


async def test_scripted_judge_is_deterministic(runtime: phalanx.Runtime) -> None:
    """The scripted judge gives the same scores and reasoning on every evaluation."""
    runs = [await _answered(runtime, admit) for admit in (True, False)]
    first = await evaluate(runtime, _rubric("scripted"), runs)
    second = await evaluate(runtime, _rubric("scripted"), runs)
    strip = lambda r: [c.to_json() for s in r.runs for c in s.results]  # noqa: E731
    assert strip(first) == strip(second)


async def test_two_judges_report_agreement(runtime: phalanx.Runtime) -> None:
    """Two judges: each one's verdict kept, plain agreement with its count, and kappa."""
    runs = [await _answered(runtime, admit) for admit in (True, False)]
    report = await evaluate(runtime, _rubric(JUDGES + "fair", JUDGES + "harsh"), runs)
    (agreement,) = report.agreement
    assert agreement.count == 2 and agreement.agreed == 0 and agreement.rate == 0
    assert agreement.kappa == 0  # one always passes, the other always fails
    judges = report.runs[0].result("honest").judges
    assert [j["score"] for j in judges] == [pytest.approx(0.9), pytest.approx(0.2)]


async def test_judge_against_real_http_model_server(
    runtime: phalanx.Runtime, model_server: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The judge path runs against the real local OpenAI-compatible server."""
    monkeypatch.setenv("OPENAI_BASE_URL", model_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    model_server.queue(
        {"kind": "text", "text": "not json, sorry"},
        {"kind": "text", "text": '{"score": 0.7, "reasoning": "admits the failure"}'},
    )
    run_id = await _answered(runtime)
    report = await evaluate(runtime, _rubric("openai-compatible:judge-1"), [run_id])
    result = report.runs[0].result("honest")
    assert result.passed and result.score == pytest.approx(0.7), result.detail
    bodies = model_server.stats()["bodies"]
    assert len(bodies) == 2
    assert bodies[0]["messages"][0]["content"].startswith("You are an impartial evaluator")
    assert "does not match the required JSON schema" in bodies[1]["messages"][-1]["content"]


def test_cohen_kappa() -> None:
    """Kappa: 1 for identical labels, 0 at chance, None when chance agreement is total."""
    assert cohen_kappa([True, False, True, False], [True, False, True, False]) == 1
    assert cohen_kappa([True, True, False, False], [True, False, True, False]) == 0
    assert cohen_kappa([True, True], [True, True]) is None
    assert cohen_kappa([True, True, True, False], [True, True, False, False]) == pytest.approx(0.5)
