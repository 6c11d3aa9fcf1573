"""Scripted judges the judge tests name as `python:tests.evals.judges:NAME`."""

from __future__ import annotations

from phalanx.agents import Fault, Rule, Script, ScriptedModel, Turn

_JUDGE = r"impartial evaluator"


def _judge(*turns: Turn) -> ScriptedModel:
    return ScriptedModel(Script(rules=(Rule(_JUDGE, turns),)), latency=0.01)


def fair() -> ScriptedModel:
    """Scores 0.9 and prefers output A (whichever is shown first): position-biased."""
    return ScriptedModel(
        Script(
            rules=(
                Rule(
                    r"compare two outputs", (Turn(text='{"better": "A", "reasoning": "A first"}'),)
                ),
                Rule(_JUDGE, (Turn(text='{"score": 0.9, "reasoning": "names the gap"}'),)),
            )
        ),
        latency=0.01,
    )


def harsh() -> ScriptedModel:
    """Scores 0.2 on everything."""
    return _judge(Turn(text='{"score": 0.2, "reasoning": "not convinced"}'))


def repaired() -> ScriptedModel:
    """Answers prose first, then (told the schema) valid JSON."""
    return _judge(
        Turn(text="Great answer, 9/10!"), Turn(text='{"score": 0.8, "reasoning": "fine"}')
    )


def garbage() -> ScriptedModel:
    """Never answers JSON."""
    return _judge(Turn(text="lol no json here"))


def off_scale() -> ScriptedModel:
    """Answers a score above the scale, every time."""
    return _judge(Turn(text='{"score": 7, "reasoning": "very good"}'))


def hanging() -> ScriptedModel:
    """Never answers at all."""
    return _judge(Turn(text="never", fault=Fault("hang")))
