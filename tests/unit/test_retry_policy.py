"""RetryPolicy: back-off bounds and which errors are retried."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import phalanx

policies = st.builds(
    phalanx.RetryPolicy,
    max_attempts=st.integers(1, 10**6),
    initial_interval=st.floats(0, 60, allow_nan=False),
    backoff=st.floats(1, 10, allow_nan=False),
    max_interval=st.floats(0, 3600, allow_nan=False),
    jitter=st.floats(0, 1, allow_nan=False),
)
attempts = st.integers(1, 10**6)
draws = st.floats(0, 1, exclude_max=True, allow_nan=False)


def _base(policy: phalanx.RetryPolicy, attempt: int) -> float:
    """The un-jittered delay, computed exactly enough for comparison."""
    if policy.initial_interval == 0:
        return 0.0
    log = math.log(policy.initial_interval) + (attempt - 1) * math.log(policy.backoff)
    if log > math.log(max(policy.max_interval, 1e-300)):
        return policy.max_interval
    return math.exp(log)


@given(policies, attempts, draws)
@example(  # found by Hypothesis: backoff**365 overflows, yet the product is tiny
    phalanx.RetryPolicy(initial_interval=5e-324, backoff=7.0, max_interval=1.0, jitter=0.0),
    366,
    0.0,
)
def test_delay_stays_within_the_jitter_band(
    policy: phalanx.RetryPolicy, attempt: int, draw: float
) -> None:
    """delay() lies in [base*(1-jitter), base*(1+jitter)] for the capped exponential base."""
    delay = policy.delay(attempt, draw)
    base = min(policy.max_interval, _base(policy, attempt))
    slack = 1e-9 * max(1.0, base)
    assert base * (1 - policy.jitter) - slack <= delay <= base * (1 + policy.jitter) + slack


@given(policies, attempts, draws)
def test_delay_never_exceeds_the_jittered_cap(
    policy: phalanx.RetryPolicy, attempt: int, draw: float
) -> None:
    """delay() is never negative and never above max_interval*(1+jitter)."""
    delay = policy.delay(attempt, draw)
    assert 0 <= delay <= policy.max_interval * (1 + policy.jitter) * (1 + 1e-12)


@given(policies, attempts)
def test_delay_is_monotonic_in_the_draw(policy: phalanx.RetryPolicy, attempt: int) -> None:
    """A larger draw never gives a shorter delay; draw 0.5 gives the base itself."""
    low, mid, high = (policy.delay(attempt, d) for d in (0.0, 0.5, 0.999))
    assert low <= mid <= high
    assert mid == pytest.approx(min(policy.max_interval, _base(policy, attempt)), rel=1e-9)


@given(st.integers(1, 100), st.integers(1, 100))
def test_attempts_are_bounded_by_max_attempts(max_attempts: int, attempt: int) -> None:
    """should_retry is true exactly while attempt < max_attempts (for a retryable error)."""
    policy = phalanx.RetryPolicy(max_attempts=max_attempts)
    assert policy.should_retry(ValueError("x"), attempt) == (attempt < max_attempts)


def test_which_errors_are_retried() -> None:
    """UserError, retryable = False and errors outside retry_on are not retried."""

    class Declared(Exception):
        retryable = False

    policy = phalanx.RetryPolicy(max_attempts=5, retry_on=(OSError, ValueError))
    assert policy.should_retry(ValueError("x"), 1)
    assert policy.should_retry(phalanx.StoreUnavailableError(store="s", reason="r"), 1) is False
    assert policy.should_retry(ConnectionError("down"), 1)
    assert not policy.should_retry(KeyError("k"), 1)
    assert not policy.should_retry(phalanx.UserError("misuse"), 1)
    assert not phalanx.RetryPolicy().should_retry(Declared(), 1)
    assert phalanx.RetryPolicy().should_retry(
        phalanx.StoreUnavailableError(store="s", reason="r"), 1
    )


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"initial_interval": -1},
        {"max_interval": -1},
        {"backoff": 0.5},
        {"jitter": 1.5},
        {"jitter": -0.1},
    ],
)
def test_nonsense_policies_are_refused(options: dict[str, float]) -> None:
    """A policy with impossible numbers raises ValueError when made."""
    with pytest.raises(ValueError):
        phalanx.RetryPolicy(**options)  # type: ignore[arg-type]
