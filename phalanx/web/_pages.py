"""What each page shows, as plain data for its template: all read from the journal.

Kept apart from the routes (`_app.py`) so that what a page holds is testable without
HTTP, and so the run page reads the one run model (`phalanx.observe`) the timeline,
the diagram and `phalanx show` read. Secrets are redacted here, before anything
reaches a template: tool arguments a tool declared secret are already journaled
redacted; on top of that any value under a key that names a secret is hidden.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .._telemetry import REDACTED
from ..durable import RunSummary, Runtime
from ..durable.lowlevel import run_stream
from ..journal import Event
from ..observe import RunModel, Span, ViewCache, build_run_model, narrate, outcome_word
from ._patterns import eval_sections, memories_used, saga_sections, vote_sections

#: Events shown per page of a run's journal (the rest are a link away).
EVENTS_PER_PAGE = 100
#: Model calls listed on a run page (the timeline draws every one).
MODEL_CALLS_SHOWN = 100
_SECRET_KEYS = ("api_key", "apikey", "password", "secret", "token", "authorization")


def redact(value: Any) -> Any:
    """`value` with every value under a secret-sounding key replaced by the redaction mark."""
    if isinstance(value, dict):
        return {
            k: REDACTED if any(s in str(k).lower() for s in _SECRET_KEYS) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def compact(value: Any, limit: int = 240) -> str:
    """JSON for a table cell, shortened."""
    text = json.dumps(redact(value), ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class ModelCall:
    """One model call as the journal captured it: the response, never invented context."""

    lane: str
    agent: str
    name: str
    outcome: str
    duration_s: float | None
    tokens: str
    text: str | None
    tool_calls: list[str]


def _model_calls(model: RunModel) -> list[ModelCall]:
    calls: list[ModelCall] = []
    for lane in model.lanes:
        for span in lane.view.spans:
            if span.kind != "model":
                continue
            response = span.response or {}
            usage = response.get("usage") or {}
            calls.append(
                ModelCall(
                    lane.name,
                    span.agent or lane.name,
                    span.name,
                    span.outcome,
                    span.duration_s,
                    f"{usage.get('input_tokens', 0)} in / {usage.get('output_tokens', 0)} out"
                    if usage
                    else "",
                    response.get("text"),
                    [
                        f"{c.get('name')}({compact(_arguments(c.get('arguments')), 160)})"
                        for c in response.get("tool_calls") or ()
                    ],
                )
            )
    return calls


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


@dataclass(frozen=True)
class RunPage:
    """Everything the run page shows (events: one page of them)."""

    model: RunModel
    story: list[str]
    events: list[Event]
    next_seq: int | None
    model_calls: list[ModelCall]
    model_call_count: int
    spans: list[tuple[str, Span]]
    sagas: list[dict[str, Any]]
    votes: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    memories: list[str]


async def run_page(
    runtime: Runtime, run_id: str, *, after: int = 0, cache: ViewCache | None = None
) -> RunPage:
    """The run page of `run_id`: its model, story, one page of events, its model calls.

    Only the run's own journal is read (its children by their summaries), through
    `cache` when given, so the page costs the same however large the run tree.

    Raises:
        UnknownRunError: no such run.
    """
    cache = cache if cache is not None else ViewCache(size=1)
    model = await build_run_model(runtime, run_id, deep=False, cache=cache)
    history = cache.history(run_id)
    journal = history.events if history is not None else []
    page = await runtime.store.read_stream(
        run_stream(run_id), from_seq=after + 1, limit=EVENTS_PER_PAGE + 1
    )
    more = len(page) > EVENTS_PER_PAGE
    events = page[:EVENTS_PER_PAGE]
    calls = _model_calls(model)
    return RunPage(
        model,
        narrate(model),
        events,
        events[-1].seq if more else None,
        calls[:MODEL_CALLS_SHOWN],
        len(calls),
        [(lane.name, s) for lane in model.lanes for s in lane.view.spans if s.kind == "tool"],
        saga_sections(journal),
        vote_sections(journal),
        await eval_sections(runtime.store, run_id),
        memories_used(journal),
    )


def run_rows(runs: list[RunSummary]) -> list[dict[str, Any]]:
    """The runs page's rows, newest first."""
    return [s.to_json() for s in sorted(runs, key=lambda s: s.started_at, reverse=True)]


__all__ = ["EVENTS_PER_PAGE", "RunPage", "compact", "outcome_word", "redact", "run_page"]
