"""Running `phalanx` in a subprocess that exports to the test's OTLP receiver."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import phalanx
from phalanx.journal import Event
from tests.observe.receiver import ReceivedSpan, Receiver

ROOT = Path(__file__).resolve().parents[2]
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def otel_env(
    tmp_path: Path,
    receiver: Receiver,
    *,
    protocol: str = "http/protobuf",
    capture: bool = False,
    **extra: str,
) -> dict[str, str]:
    """The environment of a `phalanx` process exporting to `receiver`, nothing inherited."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "OPENAI_", "ANTHROPIC_", "PHALANX_"))
    }
    env.update(
        {
            "PHALANX_STORE": store_url(tmp_path),
            "OTEL_EXPORTER_OTLP_ENDPOINT": (
                receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint
            ),
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_SERVICE_NAME": "phalanx-tests",
            # Export within 50 ms of a span ending: what a SIGKILL'd process had
            # finished must have left it before the kill.
            "OTEL_BSP_SCHEDULE_DELAY": "50",
            "PYTHONPATH": str(ROOT),
            **extra,
        }
    )
    if capture:
        env[CAPTURE_ENV] = "true"
    return env


def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journal.db'}"


def phalanx_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", *args],
        cwd=ROOT,
        env=env,
        text=True,
        capture_output=True,
        timeout=90,
        check=False,
    )


def run_workflow(target: str, run_id: str, env: dict[str, str], **inputs: Any) -> dict[str, Any]:
    """`phalanx run TARGET --json` in a subprocess; its outcome (asserts it completed)."""
    done = phalanx_cli(
        "run", target, "--run-id", run_id, "--input", json.dumps(inputs), "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    outcome: dict[str, Any] = json.loads(done.stdout)
    return outcome


def journal(url: str, run_id: str) -> list[Event]:
    """A run's events, read straight from its store."""

    async def read() -> list[Event]:
        async with phalanx.open_runtime(url) as runtime:
            return (await runtime.history(run_id)).events

    return asyncio.run(read())


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = named(spans, name)
    assert len(found) == 1, f"expected one span {name!r}, got {len(found)}"
    return found[0]


def everything_said(span: ReceivedSpan) -> str:
    """Every attribute, event and link of a span as one string (to look for leaks)."""
    return json.dumps(
        [span.name, span.attributes, span.events, span.links, span.status_message], default=str
    )
