"""Configuration: nothing by default, the OTEL_* variables, and errors that say the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import phalanx
from phalanx import ConfigError
from phalanx.observe import configure_from_env, configure_tracing
from tests.durable import workflows
from tests.observe.helpers import ROOT


@pytest.fixture
def no_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_otel_env")
@pytest.mark.parametrize(
    "env",
    [
        {},
        {"OTEL_SERVICE_NAME": "x"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"},
    ],
)
def test_nothing_is_configured_unless_an_exporter_is_asked_for(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an endpoint (or with the SDK disabled) phalanx installs no provider."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert configure_from_env() is None


def test_an_unsupported_protocol_is_a_config_error() -> None:
    """http/json is refused with the supported protocols named, before anything is set up."""
    with pytest.raises(ConfigError, match="grpc, http/protobuf"):
        configure_tracing(protocol="http/json")  # type: ignore[arg-type]  # what a user may pass


def test_cli_without_the_sdk_says_how_to_install_it(tmp_path: Path) -> None:
    """An endpoint set but the otel extra missing: exit 2 and the pip command to fix it."""
    code = (
        "import sys; sys.modules['opentelemetry.sdk'] = None; "
        "sys.argv = ['phalanx', 'runs']; from phalanx.cli import main; main()"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "PHALANX_STORE": f"sqlite:///{tmp_path / 'j.db'}",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'phalanx[otel]'" in done.stderr


@pytest.mark.usefixtures("no_otel_env")
async def test_without_a_provider_nothing_is_stamped_in_the_journal(tmp_path: Path) -> None:
    """The no-op API path: no trace ids are invented, the journal carries none."""
    async with phalanx.open_runtime(f"sqlite:///{tmp_path / 'j.db'}") as runtime:
        outcome = await runtime.run(workflows.pipeline, {"n": 2}, run_id="quiet")
        assert outcome.ok
        events = (await runtime.history("quiet")).events
    assert [e.metadata.trace_id for e in events] == [None] * len(events)
