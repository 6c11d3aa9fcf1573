"""A meter whose instruments only queue: aggregation happens in the exporter process.

The SDK aggregates each measurement in the measuring process: ~7 µs for a histogram
record, once per durable step. Here a synchronous instrument's `add`/`record`/`set`
queues `(instrument, amount, attributes)` on the `Shipper`, and the exporter process
(`_export_process`) replays it on the same instrument of an SDK `MeterProvider` and
exports over OTLP at the metric interval. Observable instruments' callbacks run here,
in the shipper's thread, once per interval; the exporter reports what they last said.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from types import GeneratorType
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, CallbackT, Observation
from opentelemetry.metrics._internal.instrument import Gauge  # not re-exported by the API
from opentelemetry.util.types import Attributes

from ._frames import Sink

if TYPE_CHECKING:
    from ._offload import Shipper


class _Queued:
    """What the synchronous instruments share: a number, and the sink to queue on."""

    __slots__ = ("_number", "_sink")

    def __init__(self, sink: Sink, number: int) -> None:
        self._sink = sink
        self._number = number

    def _queue(self, amount: float, attributes: Attributes) -> None:
        # Copied: the caller may change its mapping before it is shipped.
        self._sink((self._number, amount, dict(attributes) if attributes else None))


class _Counter(_Queued, metrics.Counter):
    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._queue(amount, attributes)


class _UpDownCounter(_Queued, metrics.UpDownCounter):
    def add(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._queue(amount, attributes)


class _Histogram(_Queued, metrics.Histogram):
    def record(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._queue(amount, attributes)


class _Gauge(_Queued, Gauge):
    def set(
        self, amount: float, attributes: Attributes = None, context: Context | None = None
    ) -> None:
        self._queue(amount, attributes)


class _Observed:
    """An observable instrument: its callbacks are the shipper's to call."""

    def __init__(
        self, name: str, callbacks: Sequence[CallbackT] | None, unit: str, description: str
    ) -> None:
        pass


class _ObservableCounter(_Observed, metrics.ObservableCounter):
    pass


class _ObservableUpDownCounter(_Observed, metrics.ObservableUpDownCounter):
    pass


class _ObservableGauge(_Observed, metrics.ObservableGauge):
    pass


def _as_function(callback: CallbackT) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """A callback as a function (a generator is primed once, then sent the options)."""
    if isinstance(callback, GeneratorType):
        next(callback)
        send: Callable[[CallbackOptions], Iterable[Observation]] = callback.send
        return send
    assert callable(callback)
    return callback


class Meter(metrics.Meter):
    """Creates queueing instruments; each is defined once in the exporter process."""

    def __init__(
        self, shipper: Shipper, number: int, name: str, version: str | None, schema_url: str | None
    ) -> None:
        super().__init__(name, version, schema_url)
        self._shipper = shipper
        self._number = number

    def _define(
        self, kind: str, name: str, unit: str, description: str, advisory: Any = None
    ) -> int:
        return self._shipper.define(
            "instrument", self._number, kind, name, unit, description, advisory
        )

    def create_counter(self, name: str, unit: str = "", description: str = "") -> metrics.Counter:
        """A counter (non-negative increments)."""
        return _Counter(self._shipper.measure, self._define("counter", name, unit, description))

    def create_up_down_counter(
        self, name: str, unit: str = "", description: str = ""
    ) -> metrics.UpDownCounter:
        """A counter that may go down."""
        number = self._define("up_down_counter", name, unit, description)
        return _UpDownCounter(self._shipper.measure, number)

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> metrics.Histogram:
        """A histogram (bucket boundaries advised as given)."""
        advisory = (
            None
            if explicit_bucket_boundaries_advisory is None
            else [float(b) for b in explicit_bucket_boundaries_advisory]
        )
        number = self._define("histogram", name, unit, description, advisory)
        return _Histogram(self._shipper.measure, number)

    def create_gauge(self, name: str, unit: str = "", description: str = "") -> Gauge:
        """A gauge (the last value set)."""
        return _Gauge(self._shipper.measure, self._define("gauge", name, unit, description))

    def _observable(
        self,
        kind: str,
        name: str,
        callbacks: Sequence[CallbackT] | None,
        unit: str,
        description: str,
    ) -> int:
        number = self._define(kind, name, unit, description)
        self._shipper.observe(number, [_as_function(c) for c in callbacks or ()])
        return number

    def create_observable_counter(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> metrics.ObservableCounter:
        """A counter whose `callbacks` report its cumulative value."""
        self._observable("observable_counter", name, callbacks, unit, description)
        return _ObservableCounter(name, callbacks, unit, description)

    def create_observable_up_down_counter(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> metrics.ObservableUpDownCounter:
        """An up-down counter whose `callbacks` report its value."""
        self._observable("observable_up_down_counter", name, callbacks, unit, description)
        return _ObservableUpDownCounter(name, callbacks, unit, description)

    def create_observable_gauge(
        self,
        name: str,
        callbacks: Sequence[CallbackT] | None = None,
        unit: str = "",
        description: str = "",
    ) -> metrics.ObservableGauge:
        """A gauge whose `callbacks` report its value."""
        self._observable("observable_gauge", name, callbacks, unit, description)
        return _ObservableGauge(name, callbacks, unit, description)


class MeterProvider(metrics.MeterProvider):
    """Hands out `Meter`s whose measurements `shipper` takes to the exporter process."""

    def __init__(self, shipper: Shipper) -> None:
        self._shipper = shipper
        self._meters: dict[tuple[str, str | None, str | None], Meter] = {}
        self._lock = threading.Lock()

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> metrics.Meter:
        """The meter of one instrumentation scope."""
        key = (name, version, schema_url)
        with self._lock:
            meter = self._meters.get(key)
            if meter is None:
                number = self._shipper.define("meter", *key)
                meter = self._meters[key] = Meter(self._shipper, number, *key)
        return meter

    def force_flush(self, timeout_millis: float = 30000) -> bool:
        """Export what was measured so far (see `Shipper.force_flush`)."""
        return self._shipper.force_flush(int(timeout_millis))

    def shutdown(self) -> None:
        """Export the rest and stop (idempotent)."""
        self._shipper.shutdown()
