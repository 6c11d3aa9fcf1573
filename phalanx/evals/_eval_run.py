"""Evaluating recorded runs: deterministically in memory, or as an eval run of its own.

`score_runs` reads runs back and scores the deterministic criteria, writing nothing
(the pytest helper and the benchmark use it). `evaluate` records an *eval run*, an
ordinary durable run of the `evaluation` workflow: each run's deterministic scores are
one step, each judge's question is journaled (`_judge`), agreement between two judges
is computed, and the report is the run's result. `replay` re-runs a recorded run's
workflow with its recorded inputs as a child run of the eval run (so the replay is
linked to the eval run, which names the original), then scores both and reports the
difference per criterion (and judges' pairwise preferences, asked in both orders).

Every eval run also appends an `EvalRecorded` event {eval_run_id, rubric, passed,
score, criteria: [{criterion, score, passed}]} to the stream `evals:RUN` of each run
it scored, which `phalanx show RUN` lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._errors import RubricError, RunFailedError
from ..durable import Runtime, WorkflowContext, load_workflow, lowlevel, workflow
from ..journal import Event, EventStore, Metadata, NewEvent
from . import _judge
from ._judge_spec import JudgeParams
from ._otel import emit
from ._recorded import ChildIndex, RecordedRun, load_run
from ._rubric import Rubric
from ._score import Agreement, CriterionResult, EvalReport, RunScore, cohen_kappa, score_checks


def evals_stream(run_id: str) -> str:
    """The stream where eval runs record their scores of run `run_id`."""
    return f"evals:{run_id}"


async def score_runs(runtime: Runtime, rubric: Rubric, run_ids: Sequence[str]) -> EvalReport:
    """Score `run_ids` on the rubric's deterministic criteria, writing nothing.

    Raises:
        UnknownRunError: a run id the store does not know.
        RubricError: the rubric has judge criteria (use `evaluate`, which journals them).
    """
    judged = [c.name for c in rubric.criteria if c.kind == "judge"]
    if judged:
        raise RubricError(
            source=rubric.source,
            where=", ".join(judged),
            problem="judge criteria are scored in an eval run: use evaluate(), not score_runs()",
        )
    index = await ChildIndex.read(runtime)
    scores = []
    for run_id in run_ids:
        run = await load_run(runtime, run_id, children=index)
        results = [r for r in score_checks(rubric, run) if r is not None]
        scores.append(RunScore(run_id=run_id, status=run.status, results=tuple(results)))
    return EvalReport(rubric=rubric.name, runs=tuple(scores))


def _question(run: RecordedRun) -> str:
    inputs = run.history.inputs
    for key in ("question", "prompt", "task", "query"):
        if isinstance(inputs.get(key), str):
            return str(inputs[key])
    return ""


async def _score_one(ctx: WorkflowContext, rubric: Rubric, run_id: str) -> dict[str, Any]:
    """The deterministic results and the judges' inputs for one run (one journaled step)."""

    async def read() -> dict[str, Any]:
        run = await load_run(lowlevel.store(ctx), run_id)
        checks = score_checks(rubric, run)
        texts = {}
        for criterion, result in zip(rubric.criteria, checks, strict=True):
            if result is None:
                assert isinstance(criterion.params, JudgeParams)
                picked = criterion.params.pick(run)
                texts[criterion.name] = picked if isinstance(picked, str) else str(picked)
        return {
            "status": run.status,
            "question": _question(run),
            "checks": [None if r is None else r.to_json() for r in checks],
            "texts": texts,
        }

    result: dict[str, Any] = await ctx.step(f"score:{run_id}", read)
    return result


def _judges_of(rubric: Rubric, params: JudgeParams) -> tuple[str, ...]:
    return params.models or (rubric.judge.model or "PHALANX_MODEL",)


async def _judge_run(
    ctx: WorkflowContext, rubric: Rubric, run_id: str, scored: dict[str, Any]
) -> RunScore:
    results: list[CriterionResult] = []
    for criterion, check in zip(rubric.criteria, scored["checks"], strict=True):
        if check is not None:
            results.append(CriterionResult.from_json(check))
            continue
        params = criterion.params
        assert isinstance(params, JudgeParams)
        verdicts = [
            await _judge.score(
                ctx,
                judge=judge,
                criterion=criterion,
                instructions=params.instructions,
                run_id=run_id,
                question=scored["question"],
                text=scored["texts"].get(criterion.name) or "",
                deadline_s=params.deadline_s or rubric.judge.deadline_s,
            )
            for judge in _judges_of(rubric, params)
        ]
        errors = [v.error for v in verdicts if v.error]
        if errors:
            results.append(
                CriterionResult.of(
                    criterion, None, errors[0], judges=[v.to_json() for v in verdicts]
                )
            )
            continue
        value = sum(float(v.score or 0.0) for v in verdicts) / len(verdicts)
        detail = " | ".join(f"{v.judge}: {v.score:g}: {v.reasoning}" for v in verdicts)
        results.append(
            CriterionResult.of(
                criterion,
                value,
                detail,
                judges=[
                    {**v.to_json(), "passed": criterion.passes(float(v.score or 0.0))}
                    for v in verdicts
                ],
            )
        )
    return RunScore(run_id=run_id, status=scored["status"], results=tuple(results))


def _agreement(rubric: Rubric, scores: Sequence[RunScore]) -> list[Agreement]:
    out = []
    for criterion in rubric.criteria:
        params = criterion.params
        if not isinstance(params, JudgeParams) or len(params.models) != 2:
            continue
        pairs = [
            (r.result(criterion.name).judges[0], r.result(criterion.name).judges[1])
            for r in scores
            if len(r.result(criterion.name).judges) == 2
            and all(j.get("error") is None for j in r.result(criterion.name).judges)
        ]
        first = [bool(a["passed"]) for a, _ in pairs]
        second = [bool(b["passed"]) for _, b in pairs]
        out.append(
            Agreement(
                criterion=criterion.name,
                judges=(params.models[0], params.models[1]),
                count=len(pairs),
                agreed=sum(a == b for a, b in zip(first, second, strict=True)),
                kappa=cohen_kappa(first, second),
            )
        )
    return out


async def _record_scores(ctx: WorkflowContext, rubric: Rubric, scores: Sequence[RunScore]) -> None:
    async def write() -> bool:
        store = lowlevel.store(ctx)
        for score in scores:
            data = {
                "eval_run_id": ctx.run_id,
                "rubric": rubric.name,
                "passed": score.passed,
                "score": round(score.score, 6),
                "criteria": [
                    {"criterion": r.criterion, "score": r.score, "passed": r.passed}
                    for r in score.results
                ],
            }
            event = NewEvent("EvalRecorded", data, Metadata(run_id=score.run_id))
            await store.append(evals_stream(score.run_id), [event])
        return True

    await ctx.step("record-scores", write)


@workflow
async def evaluation(
    ctx: WorkflowContext,
    rubric: dict[str, Any],
    runs: list[str],
    replay_of: str | None = None,
) -> dict[str, Any]:
    """An eval run: score `runs` (or replay `replay_of` and score both) against `rubric`."""
    parsed = Rubric.from_data(rubric, source="the eval run's rubric")
    targets = list(runs)
    if replay_of is not None:
        original = await _original(ctx, replay_of)
        child = f"{ctx.run_id}.replay"
        await lowlevel.run_child(
            ctx, child, load_workflow(original["workflow"]), original["inputs"]
        )
        targets = [replay_of, child]
    scores = []
    texts: list[dict[str, Any]] = []
    for run_id in targets:
        scored = await _score_one(ctx, parsed, run_id)
        texts.append(scored)
        scores.append(await _judge_run(ctx, parsed, run_id, scored))
    report = EvalReport(
        rubric=parsed.name,
        runs=tuple(scores),
        agreement=tuple(_agreement(parsed, scores)),
        eval_run_id=ctx.run_id,
        replay=None if replay_of is None else await _difference(ctx, parsed, scores, texts),
    )
    await _record_scores(ctx, parsed, scores)
    emit(report)
    return report.to_json()


async def _original(ctx: WorkflowContext, run_id: str) -> dict[str, Any]:
    """The recorded workflow and inputs of run `run_id` (one journaled step)."""

    async def read() -> dict[str, Any]:
        history = await lowlevel.runs(ctx).history(run_id)
        return {"workflow": history.workflow, "inputs": history.inputs}

    result: dict[str, Any] = await ctx.step("read-original", read)
    return result


async def _difference(
    ctx: WorkflowContext,
    rubric: Rubric,
    scores: Sequence[RunScore],
    texts: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    before, after = scores
    criteria = []
    for criterion in rubric.criteria:
        old, new = before.result(criterion.name), after.result(criterion.name)
        row: dict[str, Any] = {
            "criterion": criterion.name,
            "before": old.score,
            "after": new.score,
            "delta": None if old.score is None or new.score is None else new.score - old.score,
            "before_passed": old.passed,
            "after_passed": new.passed,
        }
        params = criterion.params
        if isinstance(params, JudgeParams):
            row["pairwise"] = [
                (
                    await _judge.compare(
                        ctx,
                        judge=judge,
                        criterion=criterion,
                        instructions=params.instructions,
                        first=texts[0]["texts"].get(criterion.name) or "",
                        second=texts[1]["texts"].get(criterion.name) or "",
                        deadline_s=params.deadline_s or rubric.judge.deadline_s,
                    )
                ).to_json()
                for judge in _judges_of(rubric, params)
            ]
        criteria.append(row)
    return {"original": before.run_id, "replay": after.run_id, "criteria": criteria}


async def evaluate(
    runtime: Runtime,
    rubric: Rubric,
    run_ids: Sequence[str],
    *,
    eval_run_id: str | None = None,
    replay_of: str | None = None,
) -> EvalReport:
    """Score runs in an eval run of their own (judges journaled); return the report.

    With `replay_of`, `run_ids` is ignored: that run is re-run and both are scored.

    Raises:
        UnknownRunError: a run id the store does not know (checked before anything runs).
        RunFailedError: the eval run itself failed (its error says why).
    """
    for run_id in [*run_ids, *([replay_of] if replay_of else [])]:
        await runtime.history(run_id)
    chosen = eval_run_id or f"eval-{runtime.entropy.token(8)}"
    outcome = await runtime.run(
        evaluation,
        {"rubric": rubric.to_json(), "runs": list(run_ids), "replay_of": replay_of},
        run_id=chosen,
    )
    if not outcome.ok:
        error = outcome.error or {}
        raise RunFailedError(
            run_id=chosen,
            status=outcome.status,
            error_type=str(error.get("type", "Error")),
            message=str(error.get("message", "")),
        )
    return EvalReport.from_json(outcome.result)


async def recorded_evals(store: EventStore, run_id: str) -> list[dict[str, Any]]:
    """What eval runs recorded about `run_id` (newest last), for `phalanx show`."""
    events: list[Event] = await store.read_stream(evals_stream(run_id))
    return [dict(e.data) for e in events]
