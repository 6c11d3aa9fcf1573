"""Pure rules of a step: what its result becomes, whether its start may be held, crash loops.

Kept apart from the context, which does the I/O: each rule decides from its inputs
alone, so it reads (and is tested) without a run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .._errors import EventDataError, StepCrashLoopError
from ..journal import find_problem
from ._history import Operation


def round_trip(stream: str, name: str, value: Any) -> Any:
    """Return `value` as replay will see it (JSON in, JSON out), refusing non-JSON."""
    if value is None or type(value) in (str, int, bool):
        return value  # already exactly what replay returns
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        path, reason = find_problem(value, "$.result") or ("$.result", str(exc))
        raise EventDataError(
            stream_id=stream,
            event_type=name,
            reason=f"the result is not JSON-serialisable: {reason}",
            path=path,
        ) from exc


def _plain_text(text: object) -> bool:
    """Whether every store takes `text` as is (checked at C speed: this is per step)."""
    return type(text) is str and text.isascii() and "\x00" not in text


def can_hold(name: str, tags: Mapping[str, Any] | None) -> bool:
    """Whether a step's StepStarted may wait for the commit of its end.

    Only when every store takes its data as is: a name or tag the store would refuse
    must be refused before the step runs, so such a start is written at once. Flat
    tags of plain text and numbers, as patterns use them, are checked fast.
    """
    if not _plain_text(name):
        return False
    for key, value in (tags or {}).items():
        if not _plain_text(key):
            return False
        if value is None or type(value) in (int, bool) or _plain_text(value):
            continue
        if find_problem(value) is not None:  # nested or unusual: the full check
            return False
    return True


def crash_loop(
    run_id: str, recorded: Operation, attempt: int, limit: int
) -> StepCrashLoopError | None:
    """The error ending a crash loop, if `attempt` was journaled as started `limit` times.

    Every journaled start of an attempt that never ended is a process that died in
    the step (a resumed runner journals each start before running it).
    """
    starts = sum(
        1
        for e in recorded.events
        if e.type == "StepStarted" and e.data.get("attempt", 1) == attempt
    )
    if starts < limit:
        return None
    return StepCrashLoopError(
        run_id=run_id, step=recorded.name, op=recorded.op, attempt=attempt, crashes=starts
    )
