"""How a vote counts, without I/O: ballots, normalisation, the tally and the rules.

Phantom completion (an answer that is well-formed and wrong) is caught by asking
several replicas and comparing. This module is the pure half of `vote`: each replica's
answer becomes a `Ballot`; answers are compared after a normalisation the caller
declares (`text`, `fields`, or any function) and, optionally, a similarity function
that puts near-equal answers in one group; a `Tally` holds the groups; a rule reads the
tally and returns a `Ruling`: settled or not yet, and the winning group if any.

A rule is any callable `(Tally) -> Ruling`, so a validator, a weighting or a policy of
your own is a few lines. It is asked after every replica that ends, and must say
`settled=True` only when no replica still running could change its answer: that is
what lets the vote cancel the rest once a quorum agrees. Rules are pure: a replay asks
them again about the same ballots and must get the same ruling.

Built in: `majority()`, `quorum(k)`, `weighted(weights, threshold)`, `unanimous()`,
and `validated(check, rule)` (answers failing `check` count as no vote).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Turns an answer into what is compared (a JSON value).
Normalizer = Callable[[Any], Any]
#: Says whether two normalised answers count as the same answer.
Similarity = Callable[[Any, Any], bool]


@dataclass(frozen=True, kw_only=True)
class Ballot:
    """One replica's vote: its raw answer, the normalised form compared, its weight."""

    replica: str
    #: The replica's branch status: only a `succeeded` replica has an answer.
    status: str
    answer: Any = None
    #: The normalised answer as canonical JSON text (None: no answer, or not valid).
    key: str | None = None
    confidence: float | None = None


@dataclass(frozen=True, kw_only=True)
class Group:
    """Replicas whose answers count as the same; `answer` is the first one's raw answer."""

    key: str
    answer: Any
    replicas: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Ruling:
    """A rule's answer: whether the vote is settled, and the winning group's key if any."""

    settled: bool
    winner: str | None = None
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class Tally:
    """Every replica, the ballots cast so far (in the order they ended) and their groups."""

    replicas: tuple[str, ...]
    ballots: Mapping[str, Ballot]
    groups: tuple[Group, ...] = field(default=())

    @property
    def pending(self) -> tuple[str, ...]:
        """Replicas without a ballot yet (still running)."""
        return tuple(r for r in self.replicas if r not in self.ballots)

    def group(self, key: str | None) -> Group | None:
        """The group with `key`."""
        return next((g for g in self.groups if g.key == key), None)

    def leader(self, weight: Callable[[str], float]) -> tuple[Group | None, float]:
        """The heaviest group (the first to form among equals) and its weight."""
        best: Group | None = None
        best_weight = 0.0
        for group in self.groups:
            total = sum(weight(r) for r in group.replicas)
            if best is None or total > best_weight:
                best, best_weight = group, total
        return best, best_weight


Rule = Callable[[Tally], Ruling]


# -- normalisation ---------------------------------------------------------------------


def canonical(value: Any) -> str:
    """The canonical JSON text of a normalised answer (the key groups compare)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def text(value: Any) -> Any:
    """Compare text loosely: Unicode-normalised, case-folded, spaces collapsed, no end dot.

    Non-text values are returned as they are.
    """
    if not isinstance(value, str):
        return value
    folded = unicodedata.normalize("NFKC", value).casefold()
    return re.sub(r"\s+", " ", folded).strip().rstrip(".!").strip()


def fields(*names: str, **normalizers: Normalizer) -> Normalizer:
    """Compare structured answers field by field: only `names` (and `normalizers`' keys).

    Each field may have its own normaliser (`fields("city", year=int)`); an answer
    that is not a mapping, or lacks a field, compares as None there.
    """
    chosen = tuple(dict.fromkeys((*names, *normalizers)))
    if not chosen:
        raise ValueError("fields() needs at least one field name")

    def normalize(value: Any) -> Any:
        if not isinstance(value, Mapping):
            return None
        out: dict[str, Any] = {}
        for name in chosen:
            item = value.get(name)
            convert = normalizers.get(name)
            out[name] = convert(item) if convert is not None and item is not None else item
        return out

    return normalize


def group_ballots(
    replicas: Sequence[str], ballots: Mapping[str, Ballot], similar: Similarity | None
) -> tuple[Group, ...]:
    """Group the ballots with a key, in the order they were cast.

    Without `similar` a ballot joins the group with its exact key; with it, the first
    group whose first answer it is similar to (compared in normalised form, decoded
    from the key).
    """
    groups: list[tuple[str, Any, Any, list[str]]] = []  # key, normalised, raw, replicas
    for replica, ballot in ballots.items():
        if ballot.key is None:
            continue
        normalised = json.loads(ballot.key) if similar is not None else None
        for key, first, _, members in groups:
            if key == ballot.key or (similar is not None and similar(first, normalised)):
                members.append(replica)
                break
        else:
            groups.append((ballot.key, normalised, ballot.answer, [replica]))
    order = {r: i for i, r in enumerate(replicas)}
    return tuple(
        Group(key=key, answer=raw, replicas=tuple(sorted(members, key=order.__getitem__)))
        for key, _, raw, members in groups
    )


# -- rules -----------------------------------------------------------------------------


def _one(_: str) -> float:
    return 1.0


def _named(rule: Rule, name: str) -> Rule:
    """`rule`, named as journaled in `VoteStarted` (e.g. `majority()`)."""
    rule.__name__ = name
    return rule


def _above(weight: Callable[[str], float], threshold: float, label: str) -> Rule:
    """A group wins with more than `threshold` of the replicas' total weight."""

    def rule(tally: Tally) -> Ruling:
        total = sum(weight(r) for r in tally.replicas)
        need = threshold * total
        pending = sum(weight(r) for r in tally.pending)
        leader, lead = tally.leader(weight)
        if leader is not None and lead > need:
            return Ruling(settled=True, winner=leader.key, reason=f"{label}: {lead:g} of {total:g}")
        # No group (not even a new one) can pass the threshold any more.
        reachable = max(lead, 0.0) + pending > need
        if not tally.pending or not reachable:
            return Ruling(settled=True, reason=f"no {label}: best {lead:g} of {total:g}")
        return Ruling(settled=False)

    return rule


def majority() -> Rule:
    """More than half of all replicas agree (a failed replica agrees with nobody)."""
    return _named(_above(_one, 0.5, "majority"), "majority()")


def weighted(weights: Mapping[str, float], *, threshold: float = 0.5) -> Rule:
    """More than `threshold` of the total weight agrees (unlisted replicas weigh 1).

    Raises:
        ValueError: a negative weight, or a threshold outside [0.5, 1) (below one
            half, two groups could both win).
    """
    if any(w < 0 for w in weights.values()):
        raise ValueError(f"weights must not be negative: {dict(weights)}")
    if not 0.5 <= threshold < 1:
        raise ValueError(f"threshold must be at least 0.5 and below 1, got {threshold}")
    table = dict(weights)
    rule = _above(lambda r: float(table.get(r, 1.0)), threshold, "weighted majority")
    return _named(rule, f"weighted({table}, threshold={threshold:g})")


def quorum(k: int) -> Rule:
    """The first answer `k` replicas agree on wins; settled as soon as one has k.

    Raises:
        ValueError: k < 1.
    """
    if k < 1:
        raise ValueError(f"a quorum needs k >= 1, got {k}")

    def rule(tally: Tally) -> Ruling:
        leader, lead = tally.leader(_one)
        if leader is not None and lead >= k:
            return Ruling(settled=True, winner=leader.key, reason=f"quorum of {k}")
        left = len(tally.pending)
        if lead + left < k:
            return Ruling(settled=True, reason=f"no quorum of {k}: best {lead:g}")
        return Ruling(settled=False)

    return _named(rule, f"quorum({k})")


def unanimous() -> Rule:
    """Every replica gives the same answer; settled at the first that does not."""

    def rule(tally: Tally) -> Ruling:
        answered = sum(len(g.replicas) for g in tally.groups)
        if len(tally.groups) > 1 or answered < len(tally.ballots):
            return Ruling(settled=True, reason="not unanimous")
        if tally.pending:
            return Ruling(settled=False)
        winner = tally.groups[0].key if tally.groups else None
        return Ruling(settled=True, winner=winner, reason="unanimous" if winner else "no answer")

    return _named(rule, "unanimous()")


def validated(check: Callable[[Any], bool], rule: Rule | None = None) -> Rule:
    """Answers `check` refuses count as no vote; `rule` (default majority) decides the rest."""
    inner = rule or majority()

    def wrapped(tally: Tally) -> Ruling:
        refused = {
            replica
            for group in tally.groups
            if not check(group.answer)
            for replica in group.replicas
        }
        groups = tuple(g for g in tally.groups if g.replicas[0] not in refused)
        return inner(Tally(replicas=tally.replicas, ballots=tally.ballots, groups=groups))

    name = getattr(inner, "__name__", "rule")
    return _named(wrapped, f"validated({getattr(check, '__name__', 'check')}, {name})")
