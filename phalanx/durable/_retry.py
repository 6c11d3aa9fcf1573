"""Retry policies for steps: how many attempts, how long between them, which errors."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._errors import UserError

#: The largest x with a finite math.exp(x), rounded down.
_LARGEST_EXP = 709.0


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """When and how a failed step is tried again.

    The delay before attempt n+1 is `initial_interval * backoff**(n-1)`, capped at
    `max_interval`, then spread by +/- `jitter` (a fraction) so that many runs failing
    together do not retry in lockstep. An error is retried when it is an instance of
    `retry_on`, not of `never_retry`, and does not declare `retryable = False` (as
    phalanx's own non-retryable errors do).

    Example::

        await ctx.step("fetch", fetch, url, retry=RetryPolicy(max_attempts=5))
    """

    max_attempts: int = 3
    initial_interval: float = 0.5
    backoff: float = 2.0
    max_interval: float = 30.0
    jitter: float = 0.2
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    never_retry: tuple[type[BaseException], ...] = (UserError,)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_interval < 0 or self.max_interval < 0 or self.backoff < 1:
            raise ValueError("intervals must be >= 0 and backoff >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether to try again after `attempt` (1-based) failed with `error`."""
        if attempt >= self.max_attempts:
            return False
        if not isinstance(error, self.retry_on) or isinstance(error, self.never_retry):
            return False
        return getattr(error, "retryable", True) is not False

    def delay(self, attempt: int, draw: float) -> float:
        """Seconds to wait after failed `attempt`; `draw` is uniform in [0, 1)."""
        try:
            grown = self.initial_interval * self.backoff ** (attempt - 1)
        except OverflowError:
            # Float pow raises rather than giving inf (attempt ~1000 at backoff 2, as
            # with max_attempts set very high to retry "forever"). Grown in logs: a
            # tiny initial interval can still keep the product small (found by
            # Hypothesis: 5e-324 x 7**365 is 7e-16 s, not the cap).
            if self.initial_interval > 0:
                log = math.log(self.initial_interval) + (attempt - 1) * math.log(self.backoff)
                grown = math.exp(min(log, _LARGEST_EXP))
            else:
                grown = 0.0
        base = min(self.max_interval, grown)
        return max(0.0, base * (1 + self.jitter * (2 * draw - 1)))


#: Steps run once unless given a policy: retrying a side effect is a decision.
NO_RETRY = RetryPolicy(max_attempts=1)
