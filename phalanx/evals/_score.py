"""Scores: per criterion, per run, per evaluation; and agreement between two judges.

A run passes a rubric when every criterion passes (its score, on the criterion's
scale, reaches the threshold); the weighted score (each criterion's score as a fraction
of its scale, weighted) is reported beside it, to rank runs, never to pass one.
Deterministic criteria are scored here, from a `RecordedRun`; judge criteria are scored
in an eval run (`_eval_run`), which journals what the judges said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._recorded import RecordedRun
from ._rubric import Criterion, Rubric


# Not frozen: a frozen dataclass's __init__ costs 6 us here against under 2 us with
# slots, and scoring a thousand runs makes twelve thousand of these. Treat as read-only.
@dataclass(kw_only=True, slots=True)
class CriterionResult:
    """How one run did on one criterion. `score` is None when it could not be scored."""

    criterion: str
    evaluator: str
    kind: str
    score: float | None
    passed: bool
    detail: str
    scale: tuple[float, float] = (0.0, 1.0)
    threshold: float = 1.0
    weight: float = 1.0
    evidence: tuple[str, ...] = ()
    judges: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(
        cls,
        criterion: Criterion,
        score: float | None,
        detail: str,
        *,
        evidence: Sequence[str] = (),
        judges: Sequence[dict[str, Any]] = (),
    ) -> CriterionResult:
        """A result for `criterion`; it passes when the score reaches the threshold."""
        return cls(
            criterion=criterion.name,
            evaluator=criterion.evaluator,
            kind=criterion.kind,
            score=score,
            passed=score is not None and criterion.passes(score),
            detail=detail,
            scale=criterion.scale,
            threshold=criterion.threshold,
            weight=criterion.weight,
            evidence=tuple(evidence),
            judges=tuple(judges),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CriterionResult:
        """Read back `to_json`."""
        return cls(
            criterion=data["criterion"],
            evaluator=data["evaluator"],
            kind=data["kind"],
            score=data["score"],
            passed=data["passed"],
            detail=data["detail"],
            scale=(data["scale"][0], data["scale"][1]),
            threshold=data["threshold"],
            weight=data["weight"],
            evidence=tuple(data.get("evidence", ())),
            judges=tuple(data.get("judges", ())),
        )

    def to_json(self) -> dict[str, Any]:
        """JSON form (`phalanx eval --json`)."""
        return {
            "criterion": self.criterion,
            "evaluator": self.evaluator,
            "kind": self.kind,
            "score": self.score,
            "passed": self.passed,
            "threshold": self.threshold,
            "scale": list(self.scale),
            "weight": self.weight,
            "detail": self.detail,
            "evidence": list(self.evidence),
            "judges": list(self.judges),
        }


@dataclass(frozen=True, kw_only=True)
class RunScore:
    """One run against the whole rubric."""

    run_id: str
    status: str
    results: tuple[CriterionResult, ...]

    @property
    def passed(self) -> bool:
        """Whether every criterion passed."""
        return all(r.passed for r in self.results)

    @property
    def score(self) -> float:
        """The weighted mean of the criteria's scores, each as a fraction of its scale."""
        total = sum(r.weight for r in self.results)
        got = 0.0
        for r in self.results:
            if r.score is not None:
                low, high = r.scale
                got += r.weight * max(0.0, min(1.0, (r.score - low) / (high - low)))
        return got / total if total else 0.0

    def result(self, criterion: str) -> CriterionResult:
        """The result for `criterion` (KeyError if the rubric has no such criterion)."""
        for r in self.results:
            if r.criterion == criterion:
                return r
        raise KeyError(criterion)

    def to_json(self) -> dict[str, Any]:
        """JSON form (`phalanx eval --json`)."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "passed": self.passed,
            "score": round(self.score, 6),
            "criteria": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunScore:
        """Read back `to_json`."""
        return cls(
            run_id=data["run_id"],
            status=data["status"],
            results=tuple(CriterionResult.from_json(c) for c in data["criteria"]),
        )


@dataclass(frozen=True, kw_only=True)
class Agreement:
    """How often two judges gave the same pass/fail, and Cohen's kappa (None if undefined)."""

    criterion: str
    judges: tuple[str, str]
    count: int
    agreed: int
    kappa: float | None

    @property
    def rate(self) -> float:
        """Plain agreement: agreed / count (0 with nothing compared)."""
        return self.agreed / self.count if self.count else 0.0

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "criterion": self.criterion,
            "judges": list(self.judges),
            "count": self.count,
            "agreed": self.agreed,
            "agreement": round(self.rate, 6),
            "kappa": None if self.kappa is None else round(self.kappa, 6),
        }


def cohen_kappa(first: Sequence[bool], second: Sequence[bool]) -> float | None:
    """Cohen's kappa of two raters' pass/fail labels; None when chance agreement is total.

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    n = len(first)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    yes_a, yes_b = sum(first) / n, sum(second) / n
    chance = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1 - chance)


@dataclass(frozen=True, kw_only=True)
class EvalReport:
    """Every run scored against a rubric, with judge agreement and the eval run's id."""

    rubric: str
    runs: tuple[RunScore, ...]
    agreement: tuple[Agreement, ...] = ()
    eval_run_id: str | None = None
    #: With `--replay`: the original run, its replay, and pairwise comparisons.
    replay: dict[str, Any] | None = field(default=None)

    @property
    def passed(self) -> bool:
        """Whether every run passed."""
        return all(r.passed for r in self.runs)

    def run(self, run_id: str) -> RunScore:
        """The score of `run_id` (KeyError if it was not evaluated)."""
        for r in self.runs:
            if r.run_id == run_id:
                return r
        raise KeyError(run_id)

    def summary(self) -> str:
        """One line per failing criterion (or that everything passed), for assertions."""
        failing = [
            f"run {r.run_id}: {c.criterion} scored {c.score} (needs {c.threshold:g}): {c.detail}"
            for r in self.runs
            for c in r.results
            if not c.passed
        ]
        return "\n".join(failing) or f"every run passed rubric {self.rubric!r}"

    def to_json(self) -> dict[str, Any]:
        """JSON form (`phalanx eval --json`)."""
        out: dict[str, Any] = {
            "rubric": self.rubric,
            "eval_run_id": self.eval_run_id,
            "passed": self.passed,
            "runs": [r.to_json() for r in self.runs],
            "agreement": [a.to_json() for a in self.agreement],
        }
        if self.replay is not None:
            out["replay"] = self.replay
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalReport:
        """Read back `to_json` (an eval run's result)."""
        return cls(
            rubric=data["rubric"],
            runs=tuple(RunScore.from_json(r) for r in data["runs"]),
            agreement=tuple(
                Agreement(
                    criterion=a["criterion"],
                    judges=(a["judges"][0], a["judges"][1]),
                    count=a["count"],
                    agreed=a["agreed"],
                    kappa=a["kappa"],
                )
                for a in data.get("agreement", ())
            ),
            eval_run_id=data.get("eval_run_id"),
            replay=data.get("replay"),
        )


def score_checks(rubric: Rubric, run: RecordedRun) -> list[CriterionResult | None]:
    """Score every deterministic criterion of `rubric` on `run`; None for judge criteria."""
    results: list[CriterionResult | None] = []
    for criterion in rubric.criteria:
        check = criterion.check
        if check is None:
            results.append(None)
            continue
        finding = check(run, criterion.params)
        results.append(
            CriterionResult.of(
                criterion,
                criterion.on_scale(finding.score),
                finding.detail,
                evidence=finding.evidence,
            )
        )
    return results
