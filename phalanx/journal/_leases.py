"""Lease and fencing rules, decided once for every store.

A store reads the stream's lease row and writes the decision back inside one
transaction; these pure functions are the decision, so both stores agree exactly.
Epochs only grow: a released lease keeps its epoch, and the next holder gets epoch+1.
"""

from __future__ import annotations

from .._errors import FencedError, LeaseHeldError
from ._events import Lease


def decide_acquire(
    current: Lease | None, stream_id: str, owner: str, now: float, ttl: float, *, force: bool
) -> Lease:
    """The lease `owner` gets, given the current row (None if never leased).

    Raises:
        LeaseHeldError: another owner's lease is live and `force` is false.
    """
    if current is None:
        return Lease(stream_id, owner, 1, now + ttl)
    live = current.expires_at > now and current.owner != ""
    if live and current.owner == owner and not force:
        return Lease(stream_id, owner, current.epoch, now + ttl)
    if live and not force:
        raise LeaseHeldError(
            stream_id=stream_id,
            owner=current.owner,
            epoch=current.epoch,
            expires_at=current.expires_at,
        )
    return Lease(stream_id, owner, current.epoch + 1, now + ttl)


def check_holder(current: Lease | None, lease: Lease) -> None:
    """Raise `FencedError` unless `lease` is still the stream's current lease."""
    if current is None or current.epoch != lease.epoch or current.owner != lease.owner:
        raise FencedError(
            stream_id=lease.stream_id,
            epoch=lease.epoch,
            current_epoch=None if current is None else current.epoch,
        )


def check_append_epoch(stream_id: str, current_epoch: int | None, epoch: int | None) -> None:
    """Raise `FencedError` unless an append's epoch matches the stream's lease.

    An unleased stream accepts only appends without an epoch; a leased one only its
    current epoch. Expiry alone does not fence: only a newer holder does, so a slow
    holder whose lease lapsed unobserved still writes safely until someone takes over.
    """
    if current_epoch != epoch:
        raise FencedError(stream_id=stream_id, epoch=epoch, current_epoch=current_epoch)
