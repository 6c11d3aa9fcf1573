"""A traced process for tests/observe/test_offload.py: `python -m tests.observe.offloaded MODE`.

It configures tracing from the `OTEL_*` variables (as the `phalanx` command does), runs
`tests.durable.workflows:pipeline` on the store in `PHALANX_STORE`, and then ends as
MODE says: `exit` (returns from main without shutting telemetry down), `flush`
(force_flush, prints "flushed", then waits to be killed), `kill` (prints "ready" once
its spans had time to be shipped, then waits to be killed), `fork` (forks a child that
ends a span "forked child" and leaves by `os._exit`, then ends "forked parent" and
exits). It also sets an attribute
the OpenTelemetry API does not allow, and observes a gauge through a callback.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from opentelemetry import metrics, trace

import phalanx
from phalanx.observe import configure_from_env
from tests.durable import workflows


def _observe(options: metrics.CallbackOptions) -> Iterable[metrics.Observation]:
    yield metrics.Observation(7, {"probe": "queue"})


async def _run() -> None:
    async with phalanx.open_runtime(os.environ["PHALANX_STORE"]) as runtime:
        outcome = await runtime.run(workflows.pipeline, {"n": 1}, run_id="offloaded")
        assert outcome.ok


def main(mode: str) -> None:
    telemetry = configure_from_env()
    assert telemetry is not None
    metrics.get_meter("tests").create_observable_gauge("tests.probe", [_observe])
    with trace.get_tracer("tests").start_as_current_span("caller") as span:
        span.set_attribute("tests.path", Path("/not/an/attribute/value"))  # type: ignore[arg-type]  # what a careless caller passes
        span.set_attribute("tests.mode", mode)
        asyncio.run(_run())
    if mode == "flush":
        telemetry.force_flush()
        print("flushed", flush=True)
        time.sleep(600)
    elif mode == "fork":
        child = os.fork()
        if child == 0:
            trace.get_tracer("tests").start_span("forked child").end()
            time.sleep(0.5)  # shipped to the child's own exporter process...
            os._exit(0)  # ...which exports it when this process is gone
        os.waitpid(child, 0)
        trace.get_tracer("tests").start_span("forked parent").end()
    elif mode == "kill":
        time.sleep(0.5)  # longer than a span waits here before it is shipped
        print("ready", flush=True)
        time.sleep(600)


if __name__ == "__main__":
    main(sys.argv[1])
