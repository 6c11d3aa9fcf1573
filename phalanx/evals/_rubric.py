"""Rubrics: the success criteria, written down before the agent, checked when loaded.

A rubric is data (a YAML or JSON file, or the same shape as a Python dict given to
`Rubric.from_data`)::

    rubric: research
    description: The research demo answers, cites, and never hides a missing source.
    judge: {model: scripted, deadline_s: 30}      # optional; default PHALANX_MODEL, 60 s
    criteria:
      - name: cites_sources
        description: The retrieval agent cites document ids.
        evaluator: citations                       # see `evaluators()`
        params: {agent: vector_db, min: 2}
        scale: [0, 1]                              # default [0, 1]
        threshold: 1                               # default: the top of the scale
        weight: 2                                  # default 1
        examples: {good: ["... [doc-2] ..."], bad: ["... (no ids) ..."]}

Everything is checked on load, before a run is scored, and a problem is a
`RubricError` naming the file, the place (`criteria[2] (cites_sources).threshold`) and
what to change: an unknown evaluator (the known ones are listed), a threshold off the
scale, a missing or unknown field, parameters the evaluator does not take.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from .._errors import RubricError
from . import _checks as _checks  # registers the deterministic evaluators
from . import _judge_spec as _judge_spec  # registers the judge evaluators
from . import _mast as _mast  # registers the failure-mode detectors
from ._registry import Check, Evaluator, Params, evaluators, lookup

_RUBRIC_KEYS = {"rubric", "description", "judge", "criteria"}
_CRITERION_KEYS = {
    "name",
    "description",
    "evaluator",
    "params",
    "scale",
    "threshold",
    "weight",
    "examples",
}


@dataclass(frozen=True, kw_only=True)
class JudgeConfig:
    """The rubric's default judge: a model spec (None: `PHALANX_MODEL`) and a deadline."""

    model: str | None = None
    deadline_s: float = 60.0


@dataclass(frozen=True, kw_only=True)
class Criterion:
    """One criterion: what is scored, on which scale, and the score that passes."""

    name: str
    evaluator: str
    params: Params
    description: str = ""
    scale: tuple[float, float] = (0.0, 1.0)
    threshold: float = 1.0
    weight: float = 1.0
    good: tuple[str, ...] = ()
    bad: tuple[str, ...] = ()

    _evaluator: Evaluator | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Looked up once: scoring a thousand runs asks for it at every criterion.
        object.__setattr__(self, "_evaluator", lookup(self.evaluator))

    @property
    def kind(self) -> str:
        """`check`, `mast` or `judge`."""
        found = self._evaluator
        return found.kind if found is not None else "check"

    @property
    def check(self) -> Check | None:
        """The deterministic evaluator's function (None for a judge)."""
        found = self._evaluator
        return None if found is None else found.check

    def on_scale(self, fraction: float) -> float:
        """A score from 0 to 1 placed on this criterion's scale."""
        low, high = self.scale
        return low + max(0.0, min(1.0, fraction)) * (high - low)

    def fraction(self, score: float) -> float:
        """A score on this criterion's scale as a fraction from 0 to 1."""
        low, high = self.scale
        return max(0.0, min(1.0, (score - low) / (high - low)))

    def passes(self, score: float) -> bool:
        """Whether `score` (on the scale) reaches the threshold."""
        return score >= self.threshold

    def to_json(self) -> dict[str, Any]:
        """The criterion as rubric data (what `Rubric.from_data` reads back)."""
        return {
            "name": self.name,
            "description": self.description,
            "evaluator": self.evaluator,
            "params": self.params.model_dump(mode="json", by_alias=True, exclude_defaults=True),
            "scale": list(self.scale),
            "threshold": self.threshold,
            "weight": self.weight,
            "examples": {"good": list(self.good), "bad": list(self.bad)},
        }


@dataclass(frozen=True, kw_only=True)
class Rubric:
    """Criteria a run must meet; a run passes when every criterion passes.

    Example::

        rubric = load_rubric("examples/rubrics/research.yaml")
        report = await evaluate(runtime, rubric, [run_id])
        assert report.passed, report.summary()
    """

    name: str
    criteria: tuple[Criterion, ...]
    description: str = ""
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    source: str = "<data>"

    @classmethod
    def from_data(cls, data: Any, *, source: str = "<data>") -> Rubric:
        """Build and check a rubric from its data (a parsed YAML/JSON document or a dict).

        Raises:
            RubricError: the data is not a usable rubric (says where and why).
        """
        return _parse(data, source)

    def to_json(self) -> dict[str, Any]:
        """The rubric as data, to journal it with an eval run."""
        return {
            "rubric": self.name,
            "description": self.description,
            "judge": {"model": self.judge.model, "deadline_s": self.judge.deadline_s},
            "criteria": [c.to_json() for c in self.criteria],
        }


def load_rubric(path: str | Path) -> Rubric:
    """Read and check a rubric file (`.yaml`, `.yml` or `.json`).

    Raises:
        RubricError: the file cannot be read or is not a usable rubric.
    """
    source = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        raise RubricError(source=source, where="", problem="no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RubricError(source=source, where="", problem=f"cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RubricError(source=source, where=where, problem=f"not valid YAML: {problem}") from exc
    return _parse(data, source)


def _error(source: str, where: str, problem: str) -> RubricError:
    return RubricError(source=source, where=where, problem=problem)


def _parse(data: Any, source: str) -> Rubric:
    if not isinstance(data, Mapping):
        raise _error(source, "", "must be a mapping with `rubric` and `criteria`")
    _no_unknown(data, _RUBRIC_KEYS, source, "the top level")
    name = data.get("rubric")
    if not isinstance(name, str) or not name.strip():
        raise _error(source, "rubric", "missing field: give the rubric a name (`rubric: NAME`)")
    raw = data.get("criteria")
    if not isinstance(raw, list) or not raw:
        raise _error(source, "criteria", "missing field: give a non-empty list of criteria")
    criteria = [_criterion(item, i, source) for i, item in enumerate(raw)]
    seen: set[str] = set()
    for i, criterion in enumerate(criteria):
        if criterion.name in seen:
            raise _error(
                source, f"criteria[{i}]", f"criterion name {criterion.name!r} is used twice"
            )
        seen.add(criterion.name)
    return Rubric(
        name=name,
        description=str(data.get("description") or ""),
        criteria=tuple(criteria),
        judge=_judge(data.get("judge"), source),
        source=source,
    )


def _no_unknown(data: Mapping[str, Any], known: set[str], source: str, where: str) -> None:
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        raise _error(
            source,
            where,
            f"unknown field(s) {', '.join(unknown)}; the fields are {', '.join(sorted(known))}",
        )


def _judge(data: Any, source: str) -> JudgeConfig:
    if data is None:
        return JudgeConfig()
    if not isinstance(data, Mapping):
        raise _error(source, "judge", "must be a mapping like {model: scripted, deadline_s: 30}")
    _no_unknown(data, {"model", "deadline_s"}, source, "judge")
    model = data.get("model")
    deadline = data.get("deadline_s", 60.0)
    if model is not None and not isinstance(model, str):
        raise _error(source, "judge.model", "must be a model spec such as `openai:gpt-4o-mini`")
    if not _number(deadline) or deadline <= 0:
        raise _error(source, "judge.deadline_s", f"must be a positive number, not {deadline!r}")
    return JudgeConfig(model=model, deadline_s=float(deadline))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _criterion(data: Any, index: int, source: str) -> Criterion:
    where = f"criteria[{index}]"
    if not isinstance(data, Mapping):
        raise _error(source, where, "must be a mapping with at least `name` and `evaluator`")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _error(source, where, "missing field `name` (a short identifier for the criterion)")
    where = f"{where} ({name})"
    _no_unknown(data, _CRITERION_KEYS, source, where)
    kind = data.get("evaluator")
    if not isinstance(kind, str):
        raise _error(source, where, f"missing field `evaluator`; one of {', '.join(evaluators())}")
    found = lookup(kind)
    if found is None:
        raise _error(
            source,
            f"{where}.evaluator",
            f"unknown evaluator {kind!r}; the evaluators are {', '.join(evaluators())}",
        )
    scale = _scale(data.get("scale", [0, 1]), source, f"{where}.scale")
    threshold = data.get("threshold", scale[1])
    if not _number(threshold):
        raise _error(source, f"{where}.threshold", f"must be a number, not {threshold!r}")
    if not scale[0] <= threshold <= scale[1]:
        raise _error(
            source,
            f"{where}.threshold",
            f"threshold {threshold:g} is outside the scale [{scale[0]:g}, {scale[1]:g}]",
        )
    weight = data.get("weight", 1)
    if not _number(weight) or weight <= 0:
        raise _error(source, f"{where}.weight", f"must be a positive number, not {weight!r}")
    good, bad = _examples(data.get("examples"), source, f"{where}.examples")
    return Criterion(
        name=name,
        evaluator=kind,
        params=_params(found, data.get("params"), source, f"{where}.params"),
        description=str(data.get("description") or ""),
        scale=scale,
        threshold=float(threshold),
        weight=float(weight),
        good=good,
        bad=bad,
    )


def _scale(value: Any, source: str, where: str) -> tuple[float, float]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(_number(v) for v in value)
        or not value[0] < value[1]
    ):
        raise _error(source, where, f"must be [low, high] with low < high, not {value!r}")
    return float(value[0]), float(value[1])


def _examples(value: Any, source: str, where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if value is None:
        return (), ()
    if not isinstance(value, Mapping) or set(value) - {"good", "bad"}:
        raise _error(source, where, "must be a mapping with `good` and/or `bad` lists of text")
    lists = []
    for key in ("good", "bad"):
        items = value.get(key) or []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise _error(source, f"{where}.{key}", "must be a list of text")
        lists.append(tuple(items))
    return lists[0], lists[1]


def _params(found: Evaluator, value: Any, source: str, where: str) -> Params:
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise _error(source, where, f"must be a mapping of {found.name}'s parameters")
    try:
        return found.params.model_validate(dict(value))
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        place = ".".join(str(p) for p in first["loc"])
        problem = str(first["msg"]).removeprefix("Value error, ")
        if first["type"] == "missing":
            problem = "missing field"
        elif first["type"] == "extra_forbidden":
            fields = sorted((f.alias or n) for n, f in found.params.model_fields.items())
            problem = (
                f"{found.name} takes no such parameter; it takes {', '.join(fields) or 'none'}"
            )
        raise _error(source, f"{where}.{place}" if place else where, problem) from exc


def rubric_json(rubric: Rubric) -> str:
    """The rubric as canonical JSON text (stable across loads)."""
    return json.dumps(rubric.to_json(), sort_keys=True, ensure_ascii=False)
