"""A run told in a few sentences, from the run model: the caption under every picture.

A newcomer reading a timeline needs three answers before any bar makes sense: which
agent hung (or failed), when the deadline hit, and what was decided about it. This
module writes them down from the same `RunModel` the pictures draw, so the words and
the bars cannot disagree.
"""

from __future__ import annotations

from ._model import RunModel
from ._runview import TROUBLE


def outcome_word(outcome: str) -> str:
    """An outcome as pictures write it: the journal's word, trouble flagged (`✗ timed_out`).

    The word is the one `phalanx show --json` and `demo --json` use, so a search of the
    file finds it; the cross marks trouble without relying on colour.
    """
    return f"✗ {outcome}" if outcome in TROUBLE else outcome


def seconds(value: float) -> str:
    """A duration or offset as people read it: `0.75s`, `4.0s`, `12s`."""
    if value < 10:
        return f"{value:.2f}s" if value < 1 else f"{value:.1f}s"
    return f"{value:.0f}s"


#: Failed steps told per lane (the timeline draws every one).
_FAILURES_TOLD = 3


def narrate(model: RunModel) -> list[str]:
    """The run in order: fan-outs and their branches, stalls, deadlines, decisions, end."""
    origin = model.start
    lines: list[str] = []
    for lane, fan in model.fan_outs:
        deadline = (
            f", deadline {seconds(fan.deadline_at - fan.started_at)}"
            if fan.deadline_at is not None
            else ""
        )
        where = "" if lane.depth == 0 else f" (in {lane.name})"
        lines.append(
            f"Fan-out {fan.name!r}{where} started {len(fan.branches)} branches at "
            f"+{seconds(fan.started_at - origin)}: policy {fan.policy}{deadline}."
        )
        for branch in fan.branches.values():
            took = "" if branch.duration_s is None else f" after {seconds(branch.duration_s)}"
            stalled = " went silent (stalled), then" if branch.stalled else ""
            late = "; its late answer was not used" if branch.late else ""
            error = f": {branch.error}" if branch.error and branch.status in TROUBLE else ""
            status = outcome_word(branch.status)
            lines.append(f"  {branch.name}{stalled} {status}{took}{error}{late}.")
        if fan.ended_at is not None:
            verdict = "PARTIAL (some branches missing)" if fan.partial else "complete"
            lines.append(f"  Fan-out ended at +{seconds(fan.ended_at - origin)}: {verdict}.")
        if fan.decision:
            lines.append(f"  Decision: {fan.decision}.")
    for lane in model.lanes:
        failed = [
            s
            for s in lane.view.spans
            if s.outcome in ("failed", "timed_out") and s.kind in ("step", "tool", "model", "op")
        ]
        for span in failed[:_FAILURES_TOLD]:
            cause = next((a.error for a in reversed(span.attempts) if a.error), None)
            said = f": {cause}" if cause else ""
            lines.append(
                f"{lane.name}: {span.name} {outcome_word(span.outcome)} at "
                f"+{seconds((span.end or span.start) - origin)}{said}."
            )
        if len(failed) > _FAILURES_TOLD:
            lines.append(f"{lane.name}: {len(failed) - _FAILURES_TOLD} more failed steps.")
        for mark in lane.view.marks:
            if mark.kind in ("takeover", "dead_letter", "disagreement", "interrupted", "budget"):
                lines.append(f"{lane.name}: {mark.label} at +{seconds(mark.at - origin)}.")
        for span in lane.view.spans:
            if span.kind == "compensation":
                lines.append(f"{lane.name}: {span.name} {span.outcome}.")
    root = model.root
    if root.end is not None:
        partial = any(fan.partial for _, fan in model.fan_outs)
        note = " with a PARTIAL answer" if partial and root.status == "completed" else ""
        error = f": {root.error}" if root.error else ""
        lines.append(
            f"Run {outcome_word(root.status)}{note} at +{seconds(root.end - origin)}{error}."
        )
    else:
        lines.append(f"Run is {root.status} (not finished).")
    return lines
