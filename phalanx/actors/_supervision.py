"""Supervision decisions as in OTP, as pure functions: which children restart, and when to give up.

Kept apart from the supervisor that acts on them (`_supervisor`), so they can be
tested on their own and so a resumed supervisor, fed the same journaled history,
decides the same.

- `one_for_one`: restart only the failed child;
- `one_for_all`: stop every other child (in reverse start order) and restart them
  all (in start order) — for children that only make sense together;
- `rest_for_one`: stop and restart the failed child and those started after it —
  for children that depend on the ones started before them.

Restart intensity bounds a crash loop: a restart that would make more than
`max_restarts` within `within` seconds is not made; the supervisor gives up, stops
its children and escalates (it fails, and whoever supervises it decides in turn).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .._errors import ConfigError

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]


@dataclass(frozen=True, kw_only=True)
class SupervisionPolicy:
    """How a supervisor treats its children when one of them fails.

    Args:
        strategy: `one_for_one`, `one_for_all` or `rest_for_one` (see the module).
        max_restarts: Restarts allowed within `within` seconds; one more and the
            supervisor gives up and escalates. 0 escalates the first failure.
        within: The sliding window for `max_restarts`, in seconds.

    Raises:
        ConfigError: an unknown strategy, negative restarts or a non-positive window.
    """

    strategy: Strategy = "one_for_one"
    max_restarts: int = 3
    within: float = 60.0

    def __post_init__(self) -> None:
        if self.strategy not in ("one_for_one", "one_for_all", "rest_for_one"):
            raise ConfigError(
                setting="strategy",
                value=self.strategy,
                reason="use 'one_for_one', 'one_for_all' or 'rest_for_one'",
            )
        if self.max_restarts < 0:
            raise ConfigError(
                setting="max_restarts",
                value=self.max_restarts,
                reason="use 0 to escalate the first failure, or a positive count",
            )
        if not self.within > 0:
            raise ConfigError(
                setting="within",
                value=self.within,
                reason="the restart window must be a positive number of seconds",
            )


def victims(strategy: Strategy, children: Sequence[str], failed: str) -> list[str]:
    """The children to restart (in start order) when `failed` fails.

    `children` are the live children and `failed`, in start order.
    """
    if strategy == "one_for_one":
        return [failed]
    if strategy == "one_for_all":
        return list(children)
    return list(children[children.index(failed) :])


def over_intensity(restarts: Sequence[float], now: float, policy: SupervisionPolicy) -> bool:
    """Whether one more restart at `now` exceeds the policy, given earlier restart times."""
    recent = [at for at in restarts if at > now - policy.within]
    return len(recent) >= policy.max_restarts
