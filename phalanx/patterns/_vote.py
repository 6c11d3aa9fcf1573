"""Redundancy and voting against phantom completion: ask N replicas, compare, never hide dissent.

`vote` runs one task on N replicas (the same model with other seeds or temperatures,
other models, other prompts: any `Branch`) in parallel under `gather`, compares their
answers after a declared normalisation and combines them by a declared rule
(`_vote_rules`). The result keeps the whole distribution and names the dissenters. A
quorum reached early cancels the replicas still running (cost-aware); a replica that
hangs runs into the vote's deadline and does not block a quorum of the others.

Disagreement is surfaced, never averaged away: when the replicas that answered do not
all agree, `DisagreementDetected` is journaled with every replica's answer. When the
rule finds no winner (or the dissent is above `max_disagreement`), an optional judge
(a function or a model call, run as a journaled step) may pick the answer; otherwise,
by policy, the vote escalates to a person (people hear of it through the notifiers of
the dead-letter path, and the run parks `waiting` on a signal: `phalanx signal RUN
vote:NAME --data '{"answer": ...}'`) or fails with `NoConsensusError`.

A vote's events (in its run's stream, each with `op` and `name`; its replicas' fan-out
is the `gather` named `vote:NAME` right after it):

- `VoteStarted`: `replicas`, `rule`;
- `ConfidenceReported`: `replica`, `confidence` (each replica that reported one; also
  a span event; nothing calibrates it);
- `DisagreementDetected`: `votes` (replica to answer, None without one), `statuses`,
  `groups`, `dissenters`, `agreement`, `max_disagreement`, `decision`;
- `VoteDecided`: the fields of `VoteResult.to_json()`;
- `VoteEscalated`: `signal` (the signal a person answers), `reason`;
- `VoteResolved`: `answer`, `by`, after a person answered.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import ConfigError, NoConsensusError
from ..durable import WorkflowContext, lowlevel
from ..tools import Escalation, Notifier, escalate
from . import _spans as spans
from ._fanout_state import Branch, BranchOutcome, Policy
from ._gather import gather
from ._vote_rules import (
    Ballot,
    Normalizer,
    Rule,
    Similarity,
    Tally,
    canonical,
    group_ballots,
    majority,
)

Decision = Literal["accepted", "escalated", "failed"]
OnNoConsensus = Literal["escalate", "fail"]
#: Picks the answer from every replica's (replica to answer); None: it cannot.
Judge = Callable[[dict[str, Any]], Awaitable[Any] | Any]


@dataclass(frozen=True, kw_only=True)
class VoteResult:
    """What a vote decided, with the whole distribution and who dissented.

    `decision` is `accepted` (the rule or the judge picked `answer`), `escalated` (a
    person was asked; `answer` is theirs once they replied, `resolved_by` who) or
    `failed` (no consensus, and the policy said fail: `NoConsensusError` carries this).
    `agreement` is the fraction of the answers cast that agree with `answer`.
    """

    name: str
    decision: Decision
    answer: Any
    votes: dict[str, Any]
    statuses: dict[str, str]
    #: Each distinct answer (the first replica's form) and the replicas that gave it.
    distribution: list[dict[str, Any]]
    dissenters: list[str]
    agreement: float
    reason: str
    confidence: dict[str, float] = field(default_factory=dict)
    decided_by: Literal["rule", "judge", "person"] | None = None
    resolved_by: str | None = None

    @property
    def disagreement(self) -> bool:
        """Whether any replica that answered disagreed with the others."""
        return len(self.distribution) > 1

    def to_json(self) -> dict[str, Any]:
        """JSON form (what `VoteDecided` journals)."""
        return {
            "vote": self.name,
            "decision": self.decision,
            "answer": self.answer,
            "votes": self.votes,
            "statuses": self.statuses,
            "distribution": self.distribution,
            "dissenters": self.dissenters,
            "agreement": self.agreement,
            "disagreement": self.disagreement,
            "reason": self.reason,
            "confidence": self.confidence,
            "decided_by": self.decided_by,
            "resolved_by": self.resolved_by,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VoteResult:
        """The result a `VoteDecided` event's data holds."""
        return cls(
            name=data["vote"],
            decision=data["decision"],
            answer=data.get("answer"),
            votes=dict(data.get("votes") or {}),
            statuses=dict(data.get("statuses") or {}),
            distribution=list(data.get("distribution") or []),
            dissenters=list(data.get("dissenters") or []),
            agreement=float(data.get("agreement", 0.0)),
            reason=str(data.get("reason", "")),
            confidence=dict(data.get("confidence") or {}),
            decided_by=data.get("decided_by"),
            resolved_by=data.get("resolved_by"),
        )


def vote_signal(name: str) -> str:
    """The signal a person answers an escalated vote `name` with."""
    return f"vote:{name}"


@dataclass(frozen=True, kw_only=True)
class _Counting:
    """The declared comparison: how answers become ballots and groups."""

    replicas: tuple[str, ...]
    normalize: Normalizer | None
    similar: Similarity | None
    confidence: Callable[[Any], float | None] | None
    min_confidence: float | None

    def ballot(self, outcome: BranchOutcome) -> Ballot:
        if outcome.status != "succeeded":
            return Ballot(replica=outcome.name, status=outcome.status)
        answer = outcome.value
        reported = _confidence(self.confidence, answer)
        key: str | None
        try:
            key = canonical(answer if self.normalize is None else self.normalize(answer))
        except Exception:  # an answer the normaliser cannot read is no vote, not a crash
            key = None
        if (
            self.min_confidence is not None
            and reported is not None
            and reported < self.min_confidence
        ):
            key = None  # too unsure to count: an abstention
        return Ballot(
            replica=outcome.name, status="succeeded", answer=answer, key=key, confidence=reported
        )

    def tally(self, outcomes: Mapping[str, BranchOutcome]) -> Tally:
        ballots = {name: self.ballot(o) for name, o in outcomes.items()}
        return Tally(
            replicas=self.replicas,
            ballots=ballots,
            groups=group_ballots(self.replicas, ballots, self.similar),
        )


def reported_confidence(answer: Any) -> float | None:
    """A numeric `confidence` key of a mapping answer, if there is one."""
    value = answer.get("confidence") if isinstance(answer, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _confidence(extract: Callable[[Any], float | None] | None, answer: Any) -> float | None:
    if extract is None:
        return None
    try:
        value = extract(answer)
    except Exception:  # no confidence reported is not an error
        return None
    return None if value is None else float(value)


def _check(
    name: str,
    replicas: Mapping[str, Branch],
    rule: Any,
    normalize: Any,
    similar: Any,
    judge: Any,
    max_disagreement: float | None,
) -> None:
    """Refuse a vote that cannot run, before anything is journaled."""
    if len(replicas) < 1:
        raise ConfigError(
            setting=f"vote {name!r} replicas",
            value=len(replicas),
            reason="a vote needs at least one replica (three make a majority meaningful)",
        )
    for label, value in (("rule", rule), ("normalize", normalize), ("similar", similar)):
        if value is not None and not callable(value):
            raise ConfigError(
                setting=f"vote {name!r} {label}",
                value=type(value).__name__,
                reason=f"the {label} must be callable, e.g. phalanx.patterns.majority()"
                if label == "rule"
                else f"the {label} must be a function of the answers",
            )
    if judge is not None and not callable(judge):
        raise ConfigError(
            setting=f"vote {name!r} judge",
            value=type(judge).__name__,
            reason="the judge must be a function of {replica: answer}",
        )
    if max_disagreement is not None and not 0.0 <= max_disagreement <= 1.0:
        raise ConfigError(
            setting=f"vote {name!r} max_disagreement",
            value=max_disagreement,
            reason="it is a fraction of the answers: between 0 and 1",
        )


async def vote(
    ctx: WorkflowContext,
    name: str,
    replicas: Mapping[str, Branch],
    *,
    rule: Rule | None = None,
    normalize: Normalizer | None = None,
    similar: Similarity | None = None,
    judge: Judge | None = None,
    max_disagreement: float | None = None,
    on_no_consensus: OnNoConsensus = "escalate",
    stop_early: bool = True,
    deadline: float | None = None,
    confidence: Callable[[Any], float | None] | None = None,
    min_confidence: float | None = None,
    notifiers: Sequence[Notifier] | None = None,
) -> VoteResult:
    """Ask every replica, compare their answers, decide by `rule`, surface dissent.

    Args:
        ctx: The workflow's context.
        name: The vote's name (unique within the run).
        replicas: Replica name to `Branch` (a child run, or `Branch.step(fn, ...)`).
        rule: Combines the answers (default `majority()`); any `(Tally) -> Ruling`.
        normalize: Turns an answer into what is compared (`text`, `fields(...)`, ...);
            default: the answer as it is.
        similar: Two normalised answers that count as one (a similarity function).
        judge: Picks the answer when the rule finds none (a function or a model call,
            given {replica: answer}; run as a journaled step); None: it cannot.
        max_disagreement: Above this fraction of dissenting answers (counted by
            replica, not weight), the rule's winner is not accepted either: the judge,
            then `on_no_consensus`, decide. None: the rule alone decides.
        on_no_consensus: `escalate` parks the run waiting for a person's answer (the
            signal `vote:NAME`, data `{"answer": ..., "by": ...}`); `fail` raises.
        stop_early: Cancel the replicas still running once the rule is settled (a
            quorum agrees); False waits for every replica, to see every dissent.
        deadline: Seconds for the replicas; one still running then is `timed_out`
            and counts as no vote.
        confidence: Reads a replica's self-reported confidence from its answer
            (default: a numeric `confidence` key of a mapping answer). Compare such
            answers with `fields(...)`, or the confidence splits the groups.
        min_confidence: Answers reporting less count as abstentions.
        notifiers: Who hears of an escalation (as of a dead-lettered tool call: the
            log, and a webhook if `PHALANX_ESCALATION_WEBHOOK` names one, by default).

    Raises:
        ConfigError: no replicas, a rule, normaliser or judge that is not callable, a
            fraction out of range (nothing is journaled).
        NoConsensusError: no answer could be accepted and `on_no_consensus="fail"`.
    """
    _check(name, replicas, rule, normalize, similar, judge, max_disagreement)
    decide = rule or majority()
    counting = _Counting(
        replicas=tuple(replicas),
        normalize=normalize,
        similar=similar,
        confidence=confidence or reported_confidence,
        min_confidence=min_confidence,
    )
    op, recorded = lowlevel.claim(ctx, "vote", name)
    if recorded is None:
        # Written with the fan-out's GatherStarted, in its append: one write fewer.
        lowlevel.record_later(
            ctx,
            "VoteStarted",
            {"op": op, "name": name, "replicas": list(replicas), "rule": _describe(decide)},
        )

    def settled(outcomes: Mapping[str, BranchOutcome]) -> bool:
        return decide(counting.tally(outcomes)).settled

    fan_out = await gather(
        ctx,
        f"vote:{name}",
        replicas,
        policy=Policy.best_effort(),
        deadline=deadline,
        stop_when=settled if stop_early else None,
    )
    # Decided again on replay too: the judge's step must claim its operation number
    # again (it answers from the journal). The journal's decision is the one kept.
    result = await _decide(
        ctx, name, counting, decide, fan_out.outcomes, judge, max_disagreement, on_no_consensus
    )
    decided = None if recorded is None else recorded.last("VoteDecided")
    if decided is not None:
        result = VoteResult.from_json(decided.data)
    else:
        await _journal(ctx, op, name, result, max_disagreement)
    spans.vote_recorded(ctx.run_id, result.to_json())
    if result.decision == "accepted":
        return result
    if on_no_consensus == "fail":
        raise NoConsensusError(vote=name, reason=result.reason, votes=result.votes)
    return await _ask_person(ctx, op, name, result, recorded, counting, notifiers)


async def _decide(
    ctx: WorkflowContext,
    name: str,
    counting: _Counting,
    rule: Rule,
    outcomes: Mapping[str, BranchOutcome],
    judge: Judge | None,
    max_disagreement: float | None,
    on_no_consensus: OnNoConsensus,
) -> VoteResult:
    """Apply the rule (and the judge) to the journaled outcomes."""
    tally = counting.tally(outcomes)
    ruling = rule(tally)
    winner = tally.group(ruling.winner) if ruling.settled else None
    reason = ruling.reason or ("settled" if winner else "the rule found no winner")
    cast = [b.replica for b in tally.ballots.values() if b.key is not None]
    answer: Any = None
    decided_by: Literal["rule", "judge"] | None = None
    if winner is not None:
        agreement = len(winner.replicas) / len(cast) if cast else 0.0
        if max_disagreement is not None and 1.0 - agreement > max_disagreement:
            reason = f"{reason}; dissent {1.0 - agreement:.2f} above {max_disagreement:g}"
            winner = None
        else:
            answer, decided_by = winner.answer, "rule"
    if winner is None and judge is not None and cast:
        votes = {r: tally.ballots[r].answer for r in cast}
        picked = await lowlevel.step(ctx, f"vote:{name}/judge", _run_judge, judge, votes)
        if picked is not None:
            answer, decided_by = picked, "judge"
            key = counting.ballot(BranchOutcome(name="judge", status="succeeded", value=picked)).key
            winner = tally.group(key)
            reason = f"{reason}; the judge picked it"
    agreeing = set(winner.replicas) if winner is not None else set()
    decision: Decision = "accepted"
    if decided_by is None:
        decision = "escalated" if on_no_consensus == "escalate" else "failed"
    return VoteResult(
        name=name,
        decision=decision,
        answer=answer,
        votes={
            r: (b.answer if b.status == "succeeded" else None)
            for r in counting.replicas
            if (b := tally.ballots.get(r)) is not None
        },
        statuses={r: outcomes[r].status for r in counting.replicas},
        distribution=[
            {"answer": g.answer, "replicas": list(g.replicas), "count": len(g.replicas)}
            for g in tally.groups
        ],
        dissenters=[r for r in cast if r not in agreeing] if decided_by else [],
        agreement=round(len(agreeing) / len(cast), 4) if cast and decided_by else 0.0,
        reason=reason,
        confidence={r: b.confidence for r, b in tally.ballots.items() if b.confidence is not None},
        decided_by=decided_by,
    )


async def _run_judge(judge: Judge, votes: dict[str, Any]) -> Any:
    picked = judge(votes)
    if inspect.isawaitable(picked):
        picked = await picked
    return picked


async def _journal(
    ctx: WorkflowContext,
    op: int,
    name: str,
    result: VoteResult,
    max_disagreement: float | None,
) -> None:
    """Journal what the vote saw and decided (one write: only the last waits)."""
    base = {"op": op, "name": name}
    for replica, value in result.confidence.items():
        lowlevel.record_later(
            ctx, "ConfidenceReported", {**base, "replica": replica, "confidence": value}
        )
    if result.disagreement or result.decision != "accepted":
        disagreement = {
            **base,
            "votes": result.votes,
            "statuses": result.statuses,
            "groups": result.distribution,
            "dissenters": result.dissenters,
            "agreement": result.agreement,
            "max_disagreement": max_disagreement,
            "decision": result.decision,
        }
        lowlevel.record_later(ctx, "DisagreementDetected", disagreement)
    await lowlevel.record(ctx, "VoteDecided", {**base, **result.to_json()})


async def _ask_person(
    ctx: WorkflowContext,
    op: int,
    name: str,
    result: VoteResult,
    recorded: Any,
    counting: _Counting,
    notifiers: Sequence[Notifier] | None,
) -> VoteResult:
    """Park the run until a person answers the vote's signal; journal their answer."""
    signal = vote_signal(name)
    if recorded is None or recorded.last("VoteEscalated") is None:
        # Written with the wait's own `SignalWaiting`: one write, the run then parks.
        lowlevel.record_later(
            ctx,
            "VoteEscalated",
            {
                "op": op,
                "name": name,
                "signal": signal,
                "reason": result.reason,
                "how": f"phalanx signal {ctx.run_id} {signal} --data "
                '\'{"answer": ..., "by": "NAME"}\'',
            },
        )
    how = f'phalanx signal {ctx.run_id} {signal} --data \'{{"answer": ..., "by": "NAME"}}\''
    # People hear of it as of a dead-lettered call: the same notifiers, once (a step).
    await lowlevel.step(
        ctx,
        f"vote:{name}/escalate",
        _notify,
        notifiers,
        Escalation(
            "vote_escalated",
            signal,
            f"vote {name!r} of run {ctx.run_id} found no answer to accept ({result.reason}); "
            f"the run waits for a person: {how}",
            ctx.clock.now(),
            {"votes": result.votes, "distribution": result.distribution},
            run_id=ctx.run_id,
        ),
    )
    reply = await ctx.wait_for_signal(signal)
    data = reply if isinstance(reply, Mapping) else {"answer": reply}
    by = str(data.get("by") or "a person")
    if recorded is None or recorded.last("VoteResolved") is None:
        await lowlevel.record(
            ctx, "VoteResolved", {"op": op, "name": name, "answer": data.get("answer"), "by": by}
        )
    # Who agreed with the person's answer, compared as the replicas' answers were.
    answer = data.get("answer")
    key = counting.ballot(BranchOutcome(name="person", status="succeeded", value=answer)).key
    cast = [r for r, s in result.statuses.items() if s == "succeeded" and r in result.votes]
    agreeing = next(
        (set(g["replicas"]) for g in result.distribution if _key_of(counting, g) == key), set()
    )
    return VoteResult.from_json(
        {
            **result.to_json(),
            "answer": answer,
            "dissenters": [r for r in cast if r not in agreeing],
            "agreement": round(len(agreeing) / len(cast), 4) if cast else 0.0,
            "decided_by": "person",
            "resolved_by": by,
        }
    )


async def _notify(notifiers: Sequence[Notifier] | None, escalation: Escalation) -> list[Any]:
    """Tell people (the tools' notifiers: the log, a webhook); how each delivery went."""
    return [d.to_json() for d in await escalate(notifiers, escalation)]


def _key_of(counting: _Counting, group: Mapping[str, Any]) -> str | None:
    """The comparison key of a journaled group's answer."""
    outcome = BranchOutcome(name="group", status="succeeded", value=group["answer"])
    return counting.ballot(outcome).key


def _describe(rule: Rule) -> str:
    return str(getattr(rule, "__name__", type(rule).__name__))
