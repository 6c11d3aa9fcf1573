"""Declaring a saga: steps, their compensations, the order and the policies, checked once.

Everything a saga will do is declared before it runs, so it is checked when the saga
is defined (`SagaDefinitionError`), never half-way through a run: every step that
needs undoing has its compensation, each compensation can take its step's result,
dependencies name real steps and form no cycle. The run journals the declaration
(`SagaStarted`), so each step's compensation is on record before the step runs.
"""

from __future__ import annotations

import graphlib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._errors import SagaDefinitionError
from ..durable import RetryPolicy

#: `reverse`: compensations run one at a time, the last completed step first (the
#: usual saga). `parallel`: every compensation's first attempt runs at once (they
#: must not depend on each other's undoing); the ones that fail then retry one by one.
CompensationOrder = Literal["reverse", "parallel"]

#: When a compensation fails for good (it is then in the dead-letter queue): `stop`
#: waits for a person to resolve it before compensating anything else; `continue`
#: runs the remaining compensations first, then waits for every failed one.
OnCompensationFailure = Literal["stop", "continue"]

#: The name of the parameter through which a compensation receives its idempotency key.
IDEMPOTENCY_PARAMETER = "idempotency_key"

#: A compensation is retried by this policy unless its step declares another.
DEFAULT_COMPENSATION_RETRY = RetryPolicy(max_attempts=5, initial_interval=0.2, max_interval=5.0)


@dataclass(frozen=True, kw_only=True)
class ForwardRecovery:
    """Forward recovery: when the step fails, run an earlier step again, then go on.

    The earlier step (`rerun`) gets the failure in `SagaState.failure`, so it can revise
    what it made (a draft re-written from the fact-checker's objections); every step
    from it up to the failed one then runs again. At most `max_rounds` rounds; after
    that the saga compensates. A re-run step's new result replaces its old one, which is
    therefore not compensated separately: the step must revise in place.
    """

    rerun: str
    max_rounds: int = 1

    def __post_init__(self) -> None:
        if self.max_rounds < 1:
            raise ValueError("ForwardRecovery.max_rounds must be at least 1")


@dataclass(frozen=True)
class SagaState:
    """What a step's action is given: the saga's inputs, earlier results, any failure.

    `results` maps each step completed so far to its (JSON) result; `failure` is set
    when forward recovery re-runs this step: `{"step", "error", "round"}`.
    """

    inputs: Mapping[str, Any]
    results: Mapping[str, Any]
    failure: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class SagaStep:
    """One step of a saga: an action and the compensation that undoes it.

    `action(state)` (sync or async) runs as a durable step named after the step,
    retried by `retry`; its result must be JSON. `compensation(result)` (sync or async,
    with an optional `idempotency_key` parameter) undoes it and is retried by
    `compensation_retry`, each attempt bounded by `compensation_timeout` seconds (a
    hung attempt counts as a failed one); it runs at least once per compensation and may
    run twice with the same key after a crash, so it must deduplicate by that key. `after` names
    the steps that must complete first (default: the step declared before it).
    `compensate_failed` declares the compensation safe for a step that failed or was
    interrupted half-way (it then gets `None` as the result). `recover` makes a failure
    re-run an earlier step first (`ForwardRecovery`). A step with nothing to undo says so with
    `compensation=None` in a saga built with `require_compensation=False`.
    """

    name: str
    action: Callable[[SagaState], Any]
    compensation: Callable[..., Any] | None = None
    after: Sequence[str] | None = None
    retry: RetryPolicy | None = None
    compensation_retry: RetryPolicy = DEFAULT_COMPENSATION_RETRY
    compensation_timeout: float | None = None
    compensate_failed: bool = False
    recover: ForwardRecovery | None = None

    def declaration(self, after: Sequence[str]) -> dict[str, Any]:
        """What `SagaStarted` journals about this step."""
        return {
            "name": self.name,
            "after": list(after),
            "compensable": self.compensation is not None,
            "compensate_failed": self.compensate_failed,
            "recover": None
            if self.recover is None
            else {"rerun": self.recover.rerun, "max_rounds": self.recover.max_rounds},
        }


@dataclass(frozen=True)
class SagaPlan:
    """A checked saga: its steps in the order they run, and each one's dependencies."""

    name: str
    steps: dict[str, SagaStep]
    order: list[str]
    after: dict[str, tuple[str, ...]]
    compensation_order: CompensationOrder
    on_compensation_failure: OnCompensationFailure
    takes_key: dict[str, bool] = field(default_factory=dict)

    def declaration(self) -> dict[str, Any]:
        """The `SagaStarted` data that declares every step before any runs."""
        return {
            "steps": [self.steps[n].declaration(self.after[n]) for n in self.order],
            "compensation_order": self.compensation_order,
            "on_compensation_failure": self.on_compensation_failure,
        }


def _fail(saga: str, reason: str) -> SagaDefinitionError:
    return SagaDefinitionError(saga=saga, reason=reason)


def _takes_key(saga: str, step: SagaStep, fn: Callable[..., Any]) -> bool:
    """Whether the compensation takes an idempotency key; refuse one that cannot be called."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError) as exc:
        raise _fail(saga, f"the compensation of step {step.name!r} has no signature") from exc
    keyed = IDEMPOTENCY_PARAMETER in parameters
    required = [
        p
        for p in parameters.values()
        if p.name != IDEMPOTENCY_PARAMETER
        and p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters.values())
    takes_one = len(required) == 1 and required[0].kind is not inspect.Parameter.KEYWORD_ONLY
    if not takes_one and not (variadic and not required):
        raise _fail(
            saga,
            f"the compensation of step {step.name!r} must take exactly one argument, the "
            f"step's result (and optionally `{IDEMPOTENCY_PARAMETER}`), not "
            f"{[p.name for p in parameters.values()]}",
        )
    return keyed


def _dependencies(saga: str, steps: Sequence[SagaStep]) -> dict[str, tuple[str, ...]]:
    after: dict[str, tuple[str, ...]] = {}
    previous: str | None = None
    for step in steps:
        if step.after is None:
            after[step.name] = () if previous is None else (previous,)
        else:
            after[step.name] = tuple(step.after)
        previous = step.name
    for name, deps in after.items():
        for dep in deps:
            if dep not in after:
                raise _fail(saga, f"step {name!r} runs after {dep!r}, which is not a step")
    return after


def _order(saga: str, steps: Sequence[SagaStep], after: dict[str, tuple[str, ...]]) -> list[str]:
    """A topological order of the steps, ties broken by declaration order."""
    rank = {s.name: i for i, s in enumerate(steps)}
    sorter = graphlib.TopologicalSorter(after)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1]) if len(exc.args) > 1 else "?"
        raise _fail(saga, f"its steps depend on each other ({cycle})") from exc
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=rank.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    # get_ready hands out every ready step at once; keep declaration order among steps
    # that became ready together, so a pipeline runs exactly as written.
    return order


def plan_saga(
    name: str,
    steps: Sequence[SagaStep],
    *,
    compensation_order: CompensationOrder,
    on_compensation_failure: OnCompensationFailure,
    require_compensation: bool,
) -> SagaPlan:
    """Check a saga's declaration and fix the order its steps run in.

    Raises:
        SagaDefinitionError: see the module docstring.
    """
    if not steps:
        raise _fail(name, "it has no steps")
    if compensation_order not in ("reverse", "parallel"):
        raise _fail(
            name, f"compensation_order must be 'reverse' or 'parallel', not {compensation_order!r}"
        )
    if on_compensation_failure not in ("stop", "continue"):
        raise _fail(
            name,
            "on_compensation_failure must be 'stop' or 'continue', "
            f"not {on_compensation_failure!r}",
        )
    by_name: dict[str, SagaStep] = {}
    takes_key: dict[str, bool] = {}
    for step in steps:
        if step.name in by_name:
            raise _fail(name, f"step {step.name!r} appears twice")
        by_name[step.name] = step
        timeout = step.compensation_timeout
        if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
            raise _fail(
                name,
                f"step {step.name!r} has compensation_timeout={timeout!r}; give a number of "
                "seconds above 0, or None for no limit",
            )
        if step.compensation is None:
            if require_compensation:
                raise _fail(
                    name,
                    f"step {step.name!r} has no compensation; give it one, or build the saga "
                    "with require_compensation=False if it has nothing to undo",
                )
            if step.compensate_failed:
                raise _fail(name, f"step {step.name!r} has compensate_failed but no compensation")
        else:
            takes_key[step.name] = _takes_key(name, step, step.compensation)
    after = _dependencies(name, steps)
    order = _order(name, steps, after)
    position = {n: i for i, n in enumerate(order)}
    for step in steps:
        if step.recover is not None:
            rerun = step.recover.rerun
            if rerun not in by_name or position[rerun] > position[step.name]:
                raise _fail(
                    name,
                    f"step {step.name!r} recovers by re-running {rerun!r}, which is not a step "
                    "that runs before it",
                )
    return SagaPlan(
        name, by_name, order, after, compensation_order, on_compensation_failure, takes_key
    )
