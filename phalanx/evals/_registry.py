"""The evaluators a rubric can name, and what each one returns.

An evaluator is registered under a name with a pydantic model of its `params` (so a
rubric's parameters are checked when the rubric loads, not when a run is scored) and a
kind: `check` (deterministic, from the journal), `mast` (a built-in failure-mode
detector, deterministic too) or `judge` (asks a model; see `_judge`). Deterministic
evaluators return a `Finding`: a score from 0 to 1 (mapped onto the criterion's scale)
and the evidence behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pydantic

from ._recorded import RecordedRun

EvaluatorKind = Literal["check", "mast", "judge"]


@dataclass(frozen=True, kw_only=True)
class Finding:
    """What a deterministic evaluator found: a score in [0, 1] and why."""

    score: float
    detail: str
    evidence: tuple[str, ...] = field(default=())


class Params(pydantic.BaseModel):
    """Base of every evaluator's parameters: unknown keys are refused (typos)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class TextTarget(Params):
    """Which text of a run to look at: an agent's last answer, a result field, or the answer.

    `agent` names an agent anywhere in the run tree; `path` is a dotted path into the
    run's result (`answer`, `branches.vector_db.status`); neither: the run's answer.
    """

    agent: str | None = None
    path: str | None = None

    def pick(self, run: RecordedRun) -> Any:
        """The value this target names in `run` (None when it is not there)."""
        if self.agent is not None:
            return run.answer(self.agent)
        if self.path is None:
            return run.answer()
        value: Any = run.result
        for part in self.path.split("."):
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value

    def describe(self) -> str:
        """Say which text this is, for details."""
        if self.agent is not None:
            return f"agent {self.agent}'s answer"
        return f"result.{self.path}" if self.path else "the answer"


P = TypeVar("P", bound=Params)
Check = Callable[[RecordedRun, Any], Finding]


@dataclass(frozen=True, kw_only=True)
class Evaluator:
    """A registered evaluator: its kind, its parameters' model and, if deterministic, its check."""

    name: str
    kind: EvaluatorKind
    params: type[Params]
    summary: str
    check: Check | None = None


_REGISTRY: dict[str, Evaluator] = {}


def evaluator(
    name: str, params: type[P], *, kind: EvaluatorKind = "check"
) -> Callable[[Callable[[RecordedRun, P], Finding]], Callable[[RecordedRun, P], Finding]]:
    """Register the decorated function as deterministic evaluator `name`."""

    def register(fn: Callable[[RecordedRun, P], Finding]) -> Callable[[RecordedRun, P], Finding]:
        _add(Evaluator(name=name, kind=kind, params=params, summary=_summary(fn), check=fn))
        return fn

    return register


def register_judge(name: str, params: type[Params], summary: str) -> None:
    """Register a judge evaluator (scored by a model, not by a function of the run)."""
    _add(Evaluator(name=name, kind="judge", params=params, summary=summary))


def _add(entry: Evaluator) -> None:
    if entry.name in _REGISTRY:
        raise ValueError(f"evaluator {entry.name!r} is registered twice")
    _REGISTRY[entry.name] = entry


def _summary(fn: Callable[..., Any]) -> str:
    return (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""


def lookup(name: str) -> Evaluator | None:
    """The evaluator registered as `name`, or None."""
    return _REGISTRY.get(name)


def evaluators() -> dict[str, Evaluator]:
    """Every registered evaluator by name."""
    return dict(sorted(_REGISTRY.items()))
