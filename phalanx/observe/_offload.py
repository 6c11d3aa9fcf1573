"""Spans and metrics recorded here, exported from another process: off the hot path.

Why: with the SDK in the traced process, an OTLP exporter configured cost a no-op
durable step +67 µs (+38%) and an agent turn +430 µs: the SDK's span and histogram
bookkeeping on the step itself (~30 µs), then encoding and sending in the export
thread, which holds the GIL the runs need. A background thread cannot take CPU work
off a Python process's hot path; another process can.

So spans here only record (`_lightspan`) and instruments only queue (`_lightmeter`):
an ended span or a measurement is a tuple appended to a deque. A shipper thread wakes
every `schedule_delay` (at most 100 ms) or when a batch is full, and writes what is
queued to the exporter process's stdin as frames (`_frames`); that process
(`_export_process`) builds SDK spans with the same ids and times, feeds the
measurements to SDK instruments, and exports over OTLP with the batch processor's
settings (`OTEL_BSP_*`) and the metric interval.

Rejected: rebuilding spans from the journal. It holds every event's time and the run
span's ids, but not each span's parent, nor what a `chat` or `execute_tool` span says
(request settings, finish reasons, redacted content), so the span tree would still be
kept here, and the exporter would read the store again. A record carries exactly what
the API was told.

Lifecycle: the exporter process starts with the first span or measurement shipped (a
process that records none starts no second interpreter). `force_flush` ships what is
queued and waits until the exporter has exported it; `shutdown` (idempotent, also run
at interpreter exit) ships the rest, closes the pipe and waits for the exporter to
export and exit (at most `OTEL_BSP_EXPORT_TIMEOUT`). If this process dies (a SIGKILL),
the exporter still reads what was shipped to the end of the pipe and exports it, so
a crash loses at most the last 100 ms of spans (the SDK's batch processor lost its
whole batch: up to `OTEL_BSP_SCHEDULE_DELAY`, 5 s by default). More than
`OTEL_BSP_MAX_QUEUE_SIZE` spans or measurements waiting (the exporter stalled) are
dropped, and counted in a warning at shutdown. A child forked from this process gets
an exporter process of its own.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation

from . import _frames as frames

log = logging.getLogger("phalanx")

#: The longest a span waits in this process before it is shipped: what a crash loses.
MAX_SHIP_DELAY_S = 0.1


def bsp_setting(name: str, default: int) -> int:
    """A positive integer `OTEL_BSP_*` setting, or its default (as the SDK reads them)."""
    try:
        value = int(os.environ.get(name, "").strip() or default)
    except ValueError:
        return default
    return value if value > 0 else default


class Shipper:
    """Ships spans and measurements recorded here to an exporter process (see the module).

    Args:
        config: What the exporter process builds its exporters and resource from
            (`_export_process.serve`): `protocol`, `endpoint`, `headers`, `resource`
            (the resource's attributes), `metrics` and `metric_interval_ms`.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = dict(config)
        interval_ms = config.get("metric_interval_ms") or bsp_setting(
            "OTEL_METRIC_EXPORT_INTERVAL", 60000
        )
        self._observe_every_s = interval_ms / 1000
        self._observers: list[
            tuple[int, Sequence[Callable[[CallbackOptions], Iterable[Observation]]]]
        ] = []
        delay_s = bsp_setting("OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self._ship_every_s = min(delay_s, MAX_SHIP_DELAY_S)
        self._max_queue = bsp_setting("OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        self._batch = bsp_setting("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        self._exit_timeout_s = bsp_setting("OTEL_BSP_EXPORT_TIMEOUT", 30000) / 1000
        self._definitions: list[tuple[Any, ...]] = []
        self._start()
        atexit.register(self.shutdown)
        # (Weak: the registration outlives the provider.)
        forked = weakref.WeakMethod(self._forked)
        os.register_at_fork(after_in_child=lambda: (method := forked()) and method())

    def _forked(self) -> None:
        """In a forked child: leave the parent's pipe alone and export on our own."""
        if self._process is not None:
            for inherited in (self._process.stdin, self._process.stdout):
                if inherited is not None:
                    inherited.close()  # our copies only; the parent's stay open
        self._start()

    def _start(self) -> None:
        # New locks too: after a fork, one may be held by a thread that is not there.
        self._pipe = threading.Lock()  # one writer of frames at a time
        self._flushing = threading.Lock()  # one reader of acknowledgements at a time
        self._spans: collections.deque[tuple[Any, ...]] = collections.deque()
        self._measures: collections.deque[tuple[Any, ...]] = collections.deque()
        self._observed_at = time.monotonic()
        self._dropped = 0
        self._broken = False
        self._stopped = False
        self._acked = self._seq = 0
        self._acks = b""
        self._wake = threading.Event()
        # Started with the first span or measurement to export: a command that records
        # none (`phalanx runs` with an endpoint configured) starts no second interpreter.
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(
            target=self._ship_forever, name="phalanx-spans", daemon=True
        )
        self._thread.start()

    # -- what the providers call ---------------------------------------------------------

    def define(self, kind: str, *fields: Any) -> int:
        """Send a definition (a tracer's scope, a meter, an instrument); its number."""
        with self._pipe:
            number = sum(1 for d in self._definitions if d[0] == kind)
            frame = (kind, number, *fields)
            self._definitions.append(frame)
            if self._process is not None:  # else sent when the process starts
                self._write(frame)
        return number

    def observe(
        self, number: int, callbacks: Sequence[Callable[[CallbackOptions], Iterable[Observation]]]
    ) -> None:
        """Call an observable instrument's `callbacks` at each metric interval, here."""
        self._observers.append((number, callbacks))

    def span(self, record: tuple[Any, ...]) -> None:
        """Queue an ended span's record (the spans' sink: the hot path, kept short)."""
        queue = self._spans
        if len(queue) >= self._max_queue:
            self._dropped += 1
            return
        queue.append(record)
        if len(queue) == self._batch:
            self._wake.set()

    def measure(self, record: tuple[Any, ...]) -> None:
        """Queue a measurement (instrument number, amount, attributes): the hot path too."""
        queue = self._measures
        if len(queue) >= self._max_queue:
            self._dropped += 1
            return
        queue.append(record)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Ship what is queued and wait until the exporter process has exported it."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._flushing:
            if self._stopped or self._broken:
                return False
            self._poll_observers()
            with self._pipe:
                self._ship()
                if self._broken:
                    return False
                if self._process is None:
                    return True  # nothing was ever recorded: nothing to export
                self._seq += 1
                seq = self._seq
                self._write(("flush", seq))
            return self._await_ack(seq, deadline)

    def shutdown(self) -> None:
        """Ship the rest, and wait for the exporter to export it and exit (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        self._thread.join()
        self._poll_observers()
        with self._pipe:
            self._ship()
            process = self._process
            if process is None:
                return  # nothing was ever recorded
            assert process.stdin is not None and process.stdout is not None
            process.stdin.close()  # the end of the stream: export everything, then exit
        try:
            process.wait(timeout=self._exit_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning(
                "the span exporter did not finish within %.0f s; spans not yet exported are lost",
                self._exit_timeout_s,
            )
            process.kill()
            process.wait()
        process.stdout.close()
        if self._dropped:
            log.warning(
                "%d spans and measurements were dropped: the exporter could not keep up",
                self._dropped,
            )

    # -- shipping ----------------------------------------------------------------------

    def _ship_forever(self) -> None:
        while not self._stopped:
            self._wake.wait(self._ship_every_s)
            self._wake.clear()
            try:
                if time.monotonic() - self._observed_at >= self._observe_every_s:
                    self._poll_observers()
                with self._pipe:
                    self._ship()
            except Exception:  # shipping must outlive a bad frame, or nothing more is sent
                log.exception("shipping spans to the exporter process failed")

    def _poll_observers(self) -> None:
        """Ship what each observable instrument's callbacks say now."""
        self._observed_at = time.monotonic()
        for number, callbacks in self._observers:
            observed: list[tuple[float, dict[str, Any]]] = []
            for callback in callbacks:
                try:
                    observations = list(callback(CallbackOptions()))
                except Exception:  # a user's callback: log it, as the SDK does
                    log.exception("an observable instrument's callback failed")
                    continue
                observed.extend((o.value, dict(o.attributes or {})) for o in observations)
            with self._pipe:
                self._write(("observed", number, observed))

    def _ship(self) -> None:
        """Write what is queued as frames (the caller holds `_pipe`)."""
        for kind, queue in (("spans", self._spans), ("measures", self._measures)):
            count = len(queue)
            if count:
                self._write((kind, [queue.popleft() for _ in range(count)]))

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start the exporter process and send it the config and the definitions."""
        self._process = process = subprocess.Popen(
            [sys.executable, "-m", "phalanx.observe._export_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        for frame in [("config", self._config), *self._definitions]:
            self._write(frame)
        return process

    def _write(self, frame: tuple[Any, ...]) -> None:
        """Write `frame` to the exporter process, started first if need be (hold `_pipe`)."""
        if self._broken:
            return
        try:
            process = self._process or self._spawn()
        except OSError as exc:  # no interpreter to start (an embedded Python), no fork
            self._broken = True
            log.warning("the span exporter process could not start (%s); nothing is exported", exc)
            return
        try:
            data = frames.encode(frame)
        except ValueError:
            # A value marshal cannot encode (an attribute of a type the API does not
            # allow): send the frame with such values dropped, as the SDK drops them.
            data = frames.encode(_plain_frame(frame))
        stdin = process.stdin
        assert stdin is not None
        view = memoryview(data)
        try:
            while view:
                written = stdin.write(view)
                view = view[written or 0 :]
        except OSError as exc:
            self._broken = True
            log.warning("the span exporter process is gone (%s); spans are no longer exported", exc)

    def _await_ack(self, seq: int, deadline: float) -> bool:
        assert self._process is not None and self._process.stdout is not None
        stdout = self._process.stdout
        while self._acked < seq:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([stdout], [], [], remaining)[0]:
                return False
            chunk = stdout.read(4096)
            if not chunk:
                return False
            self._acks += chunk
            *lines, self._acks = self._acks.split(b"\n")
            for line in lines:
                self._acked = max(self._acked, int(line))
        return True


def _plain(value: Any) -> Any:
    """`value` as a plain attribute value, or None if the API does not allow it."""
    for kind in (bool, str, int, float):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, Sequence):
        items = [_plain(item) for item in value]
        return None if any(item is None for item in items) else items
    return None


def _plain_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    plain = {str(k): _plain(v) for k, v in attributes.items()}
    return {k: v for k, v in plain.items() if v is not None}


def _plain_amount(amount: Any) -> int | float | None:
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        return None
    return int(amount) if isinstance(amount, int) else float(amount)


def _plain_frame(frame: tuple[Any, ...]) -> tuple[Any, ...]:
    """`frame` with every value the API does not allow dropped."""
    kind = frame[0]
    if kind == "measures":
        return (
            kind,
            [
                (number, plain, _plain_attributes(attributes or {}))
                for number, amount, attributes in frame[1]
                if (plain := _plain_amount(amount)) is not None
            ],
        )
    if kind == "observed":
        observed = [(_plain_amount(v), _plain_attributes(a)) for v, a in frame[2]]
        return (kind, frame[1], [(v, a) for v, a in observed if v is not None])
    if kind != "spans":
        raise ValueError(f"a {kind} frame holds a value that cannot be sent: {frame[1:]!r}")
    records = []
    for record in frame[1]:
        fields = list(record)
        fields[9] = _plain_attributes(fields[9])
        if fields[10]:
            fields[10] = [(n, _plain_attributes(a), t) for n, a, t in fields[10]]
        if fields[11]:
            fields[11] = [(*link[:4], _plain_attributes(link[4])) for link in fields[11]]
        records.append(tuple(fields))
    return (kind, records)
