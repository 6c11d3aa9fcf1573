"""Replica and parent workflows the vote tests run (module level: resume imports them).

A replica is described as `{"answer": ..., "delay": s}` or `{"hang": True}` or
`{"fail": "message"}`; `RAN` counts how often each replica's work really ran (not
replayed) and `JUDGED` how often the judge was really called.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import phalanx
from phalanx import Branch, vote
from phalanx.patterns import fields, majority, quorum, text, unanimous, validated, weighted

RAN: Counter[str] = Counter()
JUDGED: Counter[str] = Counter()
#: Every escalation the vote sent people, as the notifier received it.
NOTIFIED: list[Any] = []


class Recorder:
    """A notifier that keeps what it is told (a person's inbox, in a test)."""

    async def notify(self, escalation: Any) -> None:
        NOTIFIED.append(escalation)


#: Labels whose step after the vote raises `Crash` once.
CRASH_AFTER: set[str] = set()


class Crash(BaseException):
    """A simulated process crash (not an Exception: nothing journals it)."""


def reset() -> None:
    """Forget what an earlier test left."""
    RAN.clear()
    JUDGED.clear()
    CRASH_AFTER.clear()
    NOTIFIED.clear()


async def _answer(label: str, spec: dict[str, Any]) -> Any:
    RAN[label] += 1
    if spec.get("hang"):
        await asyncio.Event().wait()
    await asyncio.sleep(float(spec.get("delay", 0.0)))
    if "fail" in spec:
        raise ValueError(spec["fail"])
    return spec.get("answer")


@phalanx.workflow
async def replica(ctx: phalanx.WorkflowContext, label: str, spec: dict[str, Any]) -> Any:
    """One replica as a child run: its answer is a journaled step."""
    return await ctx.step("answer", _answer, label, spec)


def _after(label: str) -> str:
    if label in CRASH_AFTER:
        CRASH_AFTER.discard(label)
        raise Crash(label)
    return label


async def _judge(votes: dict[str, Any]) -> Any:
    JUDGED["judge"] += 1
    # Prefer the longest answer: a stand-in for a judge model's pick.
    return max(votes.values(), key=lambda v: len(str(v)))


RULES = {
    "majority": majority,
    "unanimous": unanimous,
    "quorum2": lambda: quorum(2),
    "weighted": lambda: weighted({"a": 3.0}),
    "validated": lambda: validated(lambda answer: str(answer).isdigit()),
}


@phalanx.workflow
async def ask(
    ctx: phalanx.WorkflowContext,
    replicas: dict[str, dict[str, Any]],
    rule: str = "majority",
    normalize: str | None = None,
    steps: bool = False,
    stop_early: bool = True,
    deadline: float | None = None,
    on_no_consensus: str = "escalate",
    judge: bool = False,
    max_disagreement: float | None = None,
    min_confidence: float | None = None,
) -> dict[str, Any]:
    """Vote over `replicas` ({name: spec}); return the result's JSON form."""
    branches = {
        name: Branch.step(_answer, label=name, spec=spec)
        if steps
        else Branch(replica, {"label": name, "spec": spec})
        for name, spec in replicas.items()
    }
    normalizer = {None: None, "text": text, "fields": fields("city", year=int)}[normalize]
    result = await vote(
        ctx,
        "q",
        branches,
        rule=RULES[rule](),
        normalize=normalizer,
        stop_early=stop_early,
        deadline=deadline,
        on_no_consensus=on_no_consensus,  # type: ignore[arg-type]  # checked by vote
        judge=_judge if judge else None,
        max_disagreement=max_disagreement,
        min_confidence=min_confidence,
        notifiers=[Recorder()],
    )
    await ctx.step("after", _after, "after")
    return result.to_json()
