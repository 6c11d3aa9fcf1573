"""What every simulated seed is checked for, and the trace that identifies a seed's run.

The checks read the final journal and the world, never the runtime's memory: they
hold for any run, whatever the workflow. Failure kinds, as `phalanx simulate` reports
them:

- `nondeterminism`: replay diverged from the journal (`NonDeterminismError`), or the
  same seed, run twice, gave two different traces (something escaped the seams: the
  stdlib `random`, the wall clock, a thread, state kept between runs).
- `escaped_exception`: a runner ended with an exception instead of a run outcome.
- `hang`: the run neither ended nor parked (waiting for a signal) in virtual time.
- `journal`: the journal is malformed: a gap in a stream's seqs, an epoch that went
  down, two completions of one step, a completed step started again (its function
  ran twice), a run ended twice or written to after its end.
- `orphan_task`: a task still pending after every runner was done (it had no owner).
- `orphan_run`: a child run left running (or waiting) after its top-level run ended.
- `internal_error`: a run failed with an exception phalanx's own code raised, of a type
  that is no phalanx error (a `KeyError` in a pattern, say): a bug, not an outcome.
- `held_lease`: a finished runner that is still alive kept a run's lease.
- `result_changed`: under faults that must not change a result (crashes, lost
  acknowledgements, duplicate messages), the status differs from the fault-free run,
  or the result does though no deadline passed (timings are left out).
- `invariant`: a check the workflow's author declared (`testing.invariant`) failed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from ..journal import Event

#: A check over a run's final journal: raise (or return a message) when it is violated.
Invariant = Callable[[Sequence[Event]], object]

W = TypeVar("W", bound=Callable[..., Any])

_TERMINAL = ("RunCompleted", "RunFailed", "RunCancelled")
_INVARIANTS = "__phalanx_invariants__"


def invariant(workflow: W) -> Callable[[Invariant], Invariant]:
    """Declare a check every simulated seed of `workflow` must pass.

    Example::

        @phalanx.testing.invariant(transfer)
        def money_is_conserved(events):
            assert total(events) == 100, "money appeared or vanished"

    The check gets every event of the final journal (all streams, in order) and fails
    by raising, or by returning a message; returning None passes.
    """

    def register(check: Invariant) -> Invariant:
        checks: list[Invariant] = getattr(workflow, _INVARIANTS, [])
        setattr(workflow, _INVARIANTS, [*checks, check])
        return check

    return register


def declared_invariants(workflow: Callable[..., Any]) -> list[Invariant]:
    """The checks declared for `workflow` with `invariant`."""
    return list(getattr(workflow, _INVARIANTS, []))


def run_user_invariants(checks: Iterable[Invariant], events: Sequence[Event]) -> list[str]:
    """The messages of the declared checks that failed."""
    failed = []
    for check in checks:
        name = getattr(check, "__name__", repr(check))
        try:
            message = check(events)
        except Exception as exc:
            failed.append(f"{name}: {type(exc).__name__}: {exc}".rstrip(": "))
            continue
        if message:
            failed.append(f"{name}: {message}")
    return failed


def journal_problems(events: Sequence[Event]) -> list[str]:
    """What is malformed in a journal (empty when it is well-formed)."""
    problems: list[str] = []
    seqs: dict[str, int] = {}
    epochs: dict[str, int] = {}
    completed: dict[tuple[str, Any], int] = {}
    ended: dict[str, int] = {}
    for event in events:
        stream = event.stream_id
        if event.seq != seqs.get(stream, 0) + 1:
            problems.append(f"{stream}: seq {event.seq} follows {seqs.get(stream, 0)}")
        seqs[stream] = event.seq
        if event.epoch is not None:
            if event.epoch < epochs.get(stream, 0):
                problems.append(
                    f"{stream} seq {event.seq}: epoch {event.epoch} after {epochs[stream]}"
                )
            epochs[stream] = event.epoch
        if stream in ended:
            problems.append(
                f"{stream} seq {event.seq}: {event.type} after the run ended at seq {ended[stream]}"
            )
        op = event.data.get("op")
        if event.type == "StepCompleted":
            if (stream, op) in completed:
                problems.append(
                    f"{stream}: step {event.data.get('name')!r} (op {op}) completed twice"
                )
            completed[(stream, op)] = event.seq
        elif event.type == "StepStarted" and (stream, op) in completed:
            problems.append(
                f"{stream} seq {event.seq}: step {event.data.get('name')!r} (op {op}) started "
                f"again after it completed at seq {completed[(stream, op)]}: its function ran "
                "twice"
            )
        if event.type in _TERMINAL:
            ended[stream] = event.seq
    return problems


def deadline_passed(event: Event) -> bool:
    """Whether the event records a deadline that passed (a run's, a branch's, a wait's)."""
    data = event.data
    return (
        data.get("status") == "timed_out"
        or data.get("reason") == "deadline exceeded"
        or event.type.endswith("TimedOut")
    )


def orphan_runs(events: Sequence[Event], top: str) -> list[str]:
    """Child runs still running or waiting although the top-level run `top` ended."""
    last: dict[str, str] = {}
    for event in events:
        stream = event.stream_id
        is_run = stream.startswith("run:") and not stream.endswith(":inbox")
        if is_run and (event.type in ("RunStarted", *_TERMINAL) or stream not in last):
            last[stream] = event.type
    if last.get(f"run:{top}") not in _TERMINAL:
        return []
    return sorted(s for s, t in last.items() if t not in _TERMINAL)


def internal_errors(events: Sequence[Event]) -> list[str]:
    """Runs that failed with a non-phalanx exception raised inside phalanx itself."""
    found = []
    for event in events:
        if event.type != "RunFailed":
            continue
        error = event.data.get("error") or {}
        kind = str(error.get("type", ""))
        frames = _FRAME.findall(str(error.get("traceback", "")))
        if kind.startswith("phalanx.") or not frames:
            continue
        innermost, function = frames[-1]
        if function == "_call_workflow":
            continue  # raised calling the workflow itself (its inputs): the user's
        if _OWN_CODE.search(innermost) and not _NOT_OURS.search(innermost):
            found.append(
                f"{event.stream_id}: {kind}: {error.get('message', '')} (raised in {innermost})"
            )
    return found


# A traceback's frame lines; phalanx's own modules; its demo and test helpers, which
# play the user's part.
_FRAME = re.compile(r'File "([^"]+)", line \d+, in (\S+)')
_OWN_CODE = re.compile(r"[/\\]phalanx[/\\]")
_NOT_OURS = re.compile(r"[/\\]phalanx[/\\](demo|testing)[/\\]")


def ran_concurrently(events: Sequence[Event], top: str) -> bool:
    """Whether run `top` had child runs, or started a step while another was running."""
    stream = f"run:{top}"
    running: set[Any] = set()
    for event in events:
        if event.stream_id != stream:
            if event.type == "RunStarted" and event.data.get("parent_run_id") is not None:
                return True
            continue
        if event.type == "StepStarted":
            if running - {event.data.get("op")}:
                return True
            running.add(event.data.get("op"))
        elif event.type in ("StepCompleted", "StepFailed"):
            running.discard(event.data.get("op"))
    return False


def masked(value: Any) -> Any:
    """`value` with every float replaced: timings legitimately move under faults."""
    if isinstance(value, float):
        return "<float>"
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value


def trace_line(row: Sequence[Any]) -> str:
    """One stored event row as a canonical trace line (trace and span ids left out).

    Built from the row as the store keeps it (its data the encoded JSON text, which
    replays byte for byte), so a trace costs no decoding and encoding again.
    """
    position, stream_id, seq, type_, data, epoch, recorded_at, run_id, agent_id, parent = row[:10]
    head = json.dumps([position, stream_id, seq, type_], ensure_ascii=False)
    tail = json.dumps([epoch, round(recorded_at, 6), run_id, agent_id, parent])
    return f"{head[:-1]},{data},{tail[1:]}"


def digest(lines: Iterable[str]) -> str:
    """The SHA-256 of a trace, one line after another."""
    sha = hashlib.sha256()
    for line in lines:
        sha.update(line.encode())
        sha.update(b"\n")
    return sha.hexdigest()


def first_difference(a: Sequence[str], b: Sequence[str]) -> str:
    """Where two traces part, for the message of a `nondeterminism` failure."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"line {index + 1}: first run {x[:300]} / second run {y[:300]}"
    return f"one trace is longer: {len(a)} lines against {len(b)}"
