"""A helper for a project's own test suite: assert that recorded runs pass a rubric."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..durable import Runtime
from ._eval_run import evaluate, score_runs
from ._rubric import Rubric, load_rubric
from ._score import EvalReport


async def assert_passes(
    runtime: Runtime,
    rubric: Rubric | str | Path,
    run_ids: Sequence[str] | str,
    *,
    replay: bool = False,
) -> EvalReport:
    """Fail the calling test (AssertionError) unless every run passes `rubric`.

    Deterministic rubrics are scored without writing anything; a rubric with judge
    criteria, or `replay=True` (re-run each run and score the replay), records an eval
    run. Returns the report for further assertions.

    Example::

        async def test_research_passes(runtime):
            outcome = await runtime.run(research, {})
            await assert_passes(runtime, "examples/rubrics/research.yaml", outcome.run_id)
    """
    chosen = rubric if isinstance(rubric, Rubric) else load_rubric(rubric)
    ids = [run_ids] if isinstance(run_ids, str) else list(run_ids)
    if replay:
        reports = [await evaluate(runtime, chosen, [], replay_of=run_id) for run_id in ids]
        runs = tuple(r.runs[1] for r in reports)
        report = EvalReport(rubric=chosen.name, runs=runs)
    elif any(c.kind == "judge" for c in chosen.criteria):
        report = await evaluate(runtime, chosen, ids)
    else:
        report = await score_runs(runtime, chosen, ids)
    if not report.passed:
        raise AssertionError(report.summary())
    return report
