"""Every error phalanx raises, in one place.

The hierarchy, so callers can branch on what happened::

    PhalanxError
    ├── UserError                   misuse: fix the call, the input or the configuration
    │   ├── InvalidStoreURLError    a store URL with an unknown scheme or shape
    │   └── EventDataError          event data that is not a JSON object of JSON values
    │       └── PayloadTooLargeError   encoded data above the store's payload limit
    └── StoreError                  the journal refused or could not do what was asked
        ├── StoreUnavailableError   the store cannot be reached or opened (retryable)
        ├── CorruptEventError       a stored row that cannot be decoded
        ├── ConcurrencyError        optimistic append lost: expected version != actual
        ├── FencedError             a write or renewal carried a stale lease epoch
        └── LeaseHeldError          someone else holds a live lease on the stream

Each error takes structured fields, builds its own message (saying how to fix it where
there is a fix) and pickles by its fields, so it survives being journaled and sent
between processes.
"""

from __future__ import annotations

from typing import Any


class PhalanxError(Exception):
    """Base of every error phalanx raises on purpose."""

    #: Whether trying the same operation again can succeed without a change.
    retryable: bool = False

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self._fields = fields
        for name, value in fields.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the structured fields, not from the message, so subclasses with
        # keyword-only constructors round-trip through pickle.
        return (_rebuild_error, (type(self), self._fields, str(self)))


def _rebuild_error(cls: type[PhalanxError], fields: dict[str, Any], message: str) -> PhalanxError:
    error = cls.__new__(cls)
    PhalanxError.__init__(error, message, **fields)
    return error


class UserError(PhalanxError):
    """The caller used phalanx wrongly; the message says how to fix it."""


class InvalidStoreURLError(UserError):
    """A store URL phalanx cannot open."""

    def __init__(self, *, url: str, reason: str) -> None:
        super().__init__(
            f"cannot use store URL {url!r}: {reason}. Supported: sqlite:///path/to/file.db "
            "(default ./.phalanx/phalanx.db) and postgresql://user@host:port/database",
            url=url,
            reason=reason,
        )


class EventDataError(UserError):
    """Event data that cannot be journaled; nothing was written."""

    def __init__(self, *, stream_id: str, event_type: str, reason: str) -> None:
        super().__init__(
            f"cannot journal event {event_type!r} on stream {stream_id!r}: {reason}; "
            "nothing was written",
            stream_id=stream_id,
            event_type=event_type,
            reason=reason,
        )


class PayloadTooLargeError(EventDataError):
    """Encoded event data above the store's payload limit; nothing was written."""

    def __init__(self, *, stream_id: str, event_type: str, size: int, limit: int) -> None:
        PhalanxError.__init__(
            self,
            f"cannot journal event {event_type!r} on stream {stream_id!r}: its data is "
            f"{size} bytes encoded, above the {limit}-byte limit; store large blobs elsewhere "
            "and journal a reference, or raise the store's max_payload_bytes; "
            "nothing was written",
            stream_id=stream_id,
            event_type=event_type,
            size=size,
            limit=limit,
            reason="payload too large",
        )


class StoreError(PhalanxError):
    """The journal store refused or failed an operation."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached, opened or locked in time; retry when it is back."""

    retryable = True

    def __init__(self, *, store: str, reason: str) -> None:
        super().__init__(
            f"store {store} is unavailable: {reason}",
            store=store,
            reason=reason,
        )


class CorruptEventError(StoreError):
    """A stored event row that cannot be decoded; it names the row to repair."""

    def __init__(self, *, stream_id: str, seq: int, position: int, reason: str) -> None:
        super().__init__(
            f"corrupt event at stream {stream_id!r} seq {seq} (global position {position}): "
            f"{reason}",
            stream_id=stream_id,
            seq=seq,
            position=position,
            reason=reason,
        )


class ConcurrencyError(StoreError):
    """An optimistic append found another version than expected; nothing was written.

    Re-read the stream, decide again, and append with the new version.
    """

    retryable = True

    def __init__(self, *, stream_id: str, expected_version: int, actual_version: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual_version}, not the expected "
            f"{expected_version}: someone else appended first; nothing was written",
            stream_id=stream_id,
            expected_version=expected_version,
            actual_version=actual_version,
        )


class FencedError(StoreError):
    """A write or lease renewal carried an epoch that is no longer the stream's lease.

    The holder was taken over (or never held the lease) and must stop writing.
    """

    def __init__(self, *, stream_id: str, epoch: int | None, current_epoch: int | None) -> None:
        if epoch is None:
            detail = f"the stream is leased (epoch {current_epoch}) and the write carried no epoch"
        elif current_epoch is None:
            detail = f"the write carried epoch {epoch} but the stream has no lease"
        else:
            detail = (
                f"the write carried epoch {epoch} but the lease is now at epoch {current_epoch}"
            )
        super().__init__(
            f"fenced out of stream {stream_id!r}: {detail}; another runner owns it, "
            "so this one must stop writing",
            stream_id=stream_id,
            epoch=epoch,
            current_epoch=current_epoch,
        )


class LeaseHeldError(StoreError):
    """Someone else holds a live lease; wait for it to expire or take it over."""

    retryable = True

    def __init__(self, *, stream_id: str, owner: str, epoch: int, expires_at: float) -> None:
        super().__init__(
            f"stream {stream_id!r} is leased by {owner!r} (epoch {epoch}) until "
            f"{expires_at:.3f}; wait for the lease to expire or take it over",
            stream_id=stream_id,
            owner=owner,
            epoch=epoch,
            expires_at=expires_at,
        )
