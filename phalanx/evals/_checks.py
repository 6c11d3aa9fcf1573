"""The deterministic evaluators: output schema, text, tool calls, budgets, citations, status.

Each reads a `RecordedRun` (the journal alone) and returns a `Finding` scored from 0 to
1. Registered names: `json_schema`, `contains`, `regex`, `tool_calls`, `latency`,
`token_budget`, `citations`, `status`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

import fastjsonschema
import pydantic

from ._recorded import RecordedRun, ToolCallSeen
from ._registry import Finding, Params, TextTarget, evaluator


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _missing(target: TextTarget) -> Finding:
    return Finding(score=0.0, detail=f"{target.describe()}: not found in the run")


class SchemaParams(TextTarget):
    """`schema`: the JSON schema (draft 7) the target must match (default: the whole result)."""

    schema_: dict[str, Any] = pydantic.Field(alias="schema")
    whole_result: bool = True
    _check: Callable[[Any], Any] = pydantic.PrivateAttr()

    @pydantic.field_validator("schema_")
    @classmethod
    def _valid(cls, schema: dict[str, Any]) -> dict[str, Any]:
        _validator(json.dumps(schema, sort_keys=True))
        return schema

    @pydantic.model_validator(mode="after")
    def _compile(self) -> SchemaParams:
        self._check = _validator(json.dumps(self.schema_, sort_keys=True))
        return self


@functools.lru_cache(maxsize=64)
def _validator(schema_text: str) -> Callable[[Any], Any]:
    # fastjsonschema compiles the schema to Python code once: validating a run's result
    # then costs tens of microseconds, where an interpreting validator costs
    # milliseconds (measured in benchmarks/evals.py, where it was a third of the time).
    try:
        return fastjsonschema.compile(json.loads(schema_text))
    except fastjsonschema.JsonSchemaDefinitionException as exc:
        raise ValueError(f"not a valid JSON schema: {exc}") from exc


@evaluator("json_schema", SchemaParams)
def json_schema(run: RecordedRun, params: SchemaParams) -> Finding:
    """The output (the result, or a field or agent answer) matches a JSON schema."""
    if params.agent is None and params.path is None and params.whole_result:
        value, where = run.result, "the result"
    else:
        value, where = params.pick(run), params.describe()
    if params.agent is not None and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return Finding(score=0.0, detail=f"{where} is not JSON: {value[:120]!r}")
    try:
        params._check(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        where_in = "/".join(str(p) for p in exc.path[1:]) or "(root)"
        problem = f"{where_in}: {exc.message.removeprefix(str(exc.name) + ' ').strip()}"
        return Finding(
            score=0.0, detail=f"{where} breaks the schema: {problem}", evidence=(problem,)
        )
    return Finding(score=1.0, detail=f"{where} matches the schema")


class ContainsParams(TextTarget):
    """`all` must all appear, `any` at least one, `none` none (case-insensitive by default)."""

    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    case_sensitive: bool = False

    @pydantic.model_validator(mode="after")
    def _something(self) -> ContainsParams:
        if not (self.all or self.any or self.none):
            raise ValueError("give at least one of all, any, none (lists of text)")
        return self


@evaluator("contains", ContainsParams)
def contains(run: RecordedRun, params: ContainsParams) -> Finding:
    """The text contains every `all` string, one of `any`, none of `none`."""
    text = _as_text(params.pick(run))
    if text is None:
        return _missing(params)
    fold = (lambda s: s) if params.case_sensitive else str.casefold
    have = fold(text)
    problems = [f"missing {s!r}" for s in params.all if fold(s) not in have]
    if params.any and not any(fold(s) in have for s in params.any):
        problems.append(f"none of {list(params.any)}")
    problems += [f"contains {s!r}" for s in params.none if fold(s) in have]
    checks = len(params.all) + (1 if params.any else 0) + len(params.none)
    score = (checks - len(problems)) / checks
    detail = f"{params.describe()}: " + ("; ".join(problems) if problems else "as required")
    return Finding(score=score, detail=detail, evidence=tuple(problems))


class RegexParams(TextTarget):
    """`pattern` (Python syntax) must match somewhere, or with `match: false` nowhere."""

    pattern: str
    match: bool = True

    @pydantic.field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return pattern


@evaluator("regex", RegexParams)
def regex(run: RecordedRun, params: RegexParams) -> Finding:
    """A regular expression matches the text (or, with `match: false`, does not)."""
    text = _as_text(params.pick(run))
    if text is None:
        return _missing(params)
    found = re.search(params.pattern, text)
    ok = (found is not None) == params.match
    said = f"matches {found.group(0)!r}" if found else "has no match"
    return Finding(score=float(ok), detail=f"{params.describe()} {said} for /{params.pattern}/")


class ExpectedCall(Params):
    """A tool call expected somewhere in the run tree: its name, and arguments it includes."""

    name: str
    arguments: dict[str, Any] = pydantic.Field(default_factory=dict)
    agent: str | None = None


class ToolCallsParams(Params):
    """`expected`: calls that must appear; `forbidden`: tool names that must not."""

    expected: tuple[ExpectedCall, ...] = ()
    forbidden: tuple[str, ...] = ()
    ordered: bool = False


def _matches(call: ToolCallSeen, want: ExpectedCall) -> bool:
    if call.tool != want.name or (want.agent is not None and call.agent != want.agent):
        return False
    return all(call.arguments.get(k) == v for k, v in want.arguments.items())


@evaluator("tool_calls", ToolCallsParams)
def tool_calls(run: RecordedRun, params: ToolCallsParams) -> Finding:
    """The expected tool calls (names and arguments) were made; forbidden ones were not."""
    calls = sorted((c for r in run.walk() for c in r.tool_calls), key=lambda c: c.position)
    problems: list[str] = []
    start = 0
    for want in params.expected:
        hit = next((i for i in range(start, len(calls)) if _matches(calls[i], want)), None)
        if hit is None:
            args = json.dumps(want.arguments, sort_keys=True) if want.arguments else ""
            problems.append(
                f"no call {want.name}({args})" + (" in order" if params.ordered else "")
            )
        elif params.ordered:
            start = hit + 1
    problems += [f"forbidden call {c.tool}" for c in calls if c.tool in params.forbidden]
    checks = len(params.expected) + len(params.forbidden)
    bad = min(len(problems), checks)
    score = 1.0 if checks == 0 else (checks - bad) / checks
    made = ", ".join(sorted({c.tool for c in calls})) or "none"
    detail = "; ".join(problems) if problems else f"every expected call made (tools used: {made})"
    return Finding(score=score, detail=detail, evidence=tuple(problems))


class LatencyParams(Params):
    """`max_seconds`: the run, start to end, must take at most this long."""

    max_seconds: float = pydantic.Field(gt=0)


@evaluator("latency", LatencyParams)
def latency(run: RecordedRun, params: LatencyParams) -> Finding:
    """The run took at most `max_seconds` from its start to its end."""
    took = run.duration_s
    if took is None:
        return Finding(score=0.0, detail=f"the run has not ended ({run.status})")
    ok = took <= params.max_seconds
    return Finding(score=float(ok), detail=f"took {took:.3f}s (budget {params.max_seconds:g}s)")


class TokenParams(Params):
    """Budgets for the whole run tree's model calls: total, input and/or output tokens."""

    max_total: int | None = pydantic.Field(default=None, gt=0)
    max_input: int | None = pydantic.Field(default=None, gt=0)
    max_output: int | None = pydantic.Field(default=None, gt=0)

    @pydantic.model_validator(mode="after")
    def _something(self) -> TokenParams:
        if self.max_total is None and self.max_input is None and self.max_output is None:
            raise ValueError("give at least one of max_total, max_input, max_output")
        return self


@evaluator("token_budget", TokenParams)
def token_budget(run: RecordedRun, params: TokenParams) -> Finding:
    """The run tree's model calls stayed within their token budgets."""
    tokens_in, tokens_out = run.usage()
    used = {"total": tokens_in + tokens_out, "input": tokens_in, "output": tokens_out}
    limits = {"total": params.max_total, "input": params.max_input, "output": params.max_output}
    over = tuple(
        f"{k} {used[k]} > {limit}"
        for k, limit in limits.items()
        if limit is not None and used[k] > limit
    )
    spent = f"{used['input']} in + {used['output']} out tokens"
    return Finding(
        score=0.0 if over else 1.0,
        detail=f"{spent}; over budget: {', '.join(over)}" if over else f"{spent}, within budget",
        evidence=over,
    )


#: Document ids like [doc-3], [1] or [source], and URLs.
DEFAULT_CITATION = r"\[[A-Za-z0-9_.:-]+\]|\b(?:https?|offline)://[^\s,;)]+"


class CitationParams(TextTarget):
    """At least `min` citations (matches of `pattern`) in the text."""

    pattern: str = DEFAULT_CITATION
    min: int = pydantic.Field(default=1, ge=1)


@evaluator("citations", CitationParams)
def citations(run: RecordedRun, params: CitationParams) -> Finding:
    """The text cites its sources: at least `min` citations."""
    text = _as_text(params.pick(run))
    if text is None:
        return _missing(params)
    found = tuple(dict.fromkeys(re.findall(params.pattern, text)))
    score = min(1.0, len(found) / params.min)
    return Finding(
        score=score,
        detail=f"{params.describe()} cites {len(found)} source(s) (at least {params.min} wanted)",
        evidence=found[:10],
    )


class StatusParams(Params):
    """`expected`: the statuses the run may end with (default: completed)."""

    expected: tuple[str, ...] = ("completed",)


@evaluator("status", StatusParams)
def status(run: RecordedRun, params: StatusParams) -> Finding:
    """The run ended with one of the expected statuses."""
    ok = run.status in params.expected
    error = run.history.error or {}
    why = f": {error.get('type')}: {error.get('message')}" if error else ""
    return Finding(score=float(ok), detail=f"run {run.status}{why}")
