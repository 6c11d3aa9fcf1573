"""Token buckets shared through the store: the refill-and-take rule, decided once.

A rate limit (`rate` tokens a second, at most `burst` saved up) is one row per key
(`model:NAME`, `tool:NAME`) in the `rate_limits` table, next to the work queue's. A
store locks the row (`SELECT ... FOR UPDATE` on PostgreSQL, with the server's clock;
`BEGIN IMMEDIATE` on SQLite), applies `decide_take` and writes the result back, so
every worker in a fleet draws from one bucket: ten workers together never take more
than `rate * t + burst` tokens in `t` seconds. This module is the pure decision, so
both stores agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Float slack: a caller that waited exactly the wait it was told gets its token.
_ROUNDING = 1e-9


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A declared limit: `rate` tokens a second, at most `burst` saved up."""

    key: str
    rate: float
    burst: float


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucket's stored state: `tokens` held as of `updated` (seconds, store clock)."""

    tokens: float
    updated: float


def check_rate(key: str, rate: float, burst: float) -> None:
    """Refuse a limit that is empty, stops its key for good, or cannot refill.

    Raises:
        ValueError: an empty key, a rate that is not positive, or a burst below 1.
    """
    if not key.strip():
        raise ValueError("a rate limit's key must not be empty (say model:NAME or tool:NAME)")
    if not rate > 0 or rate == float("inf"):
        raise ValueError(f"a rate must be a positive number of tokens a second, got {rate}")
    if not burst >= 1 or burst == float("inf"):
        raise ValueError(f"a burst must be at least 1 token, got {burst}")


def decide_take(bucket: Bucket | None, limit: RateLimit, now: float) -> tuple[Bucket, float]:
    """The bucket after one take at `now`, and how long to wait (0: the token was taken).

    A new bucket starts full. Tokens refill at `limit.rate` up to `limit.burst`; a
    clock that went backwards refills nothing. When fewer than one token is left,
    nothing is taken and the wait is the time until one will be there.
    """
    if bucket is None:
        tokens, since = limit.burst, now
    else:
        elapsed = max(0.0, now - bucket.updated)
        tokens = min(limit.burst, bucket.tokens + elapsed * limit.rate)
        since = max(now, bucket.updated)
    if tokens >= 1.0 - _ROUNDING:
        return Bucket(max(0.0, tokens - 1.0), since), 0.0
    return Bucket(tokens, since), (1.0 - tokens) / limit.rate
