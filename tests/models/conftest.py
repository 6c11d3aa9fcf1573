"""Fixtures for the model adapters: one real fake-model server per session, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_openai_server import FakeModelServer, start_fake_openai_server


@pytest.fixture(scope="session")
def fake_model_server_process() -> Iterator[FakeModelServer]:
    """The fake server subprocess, started once: starting Python costs more than a test."""
    with start_fake_openai_server() as server:
        yield server


@pytest.fixture
def fake_server(fake_model_server_process: FakeModelServer) -> FakeModelServer:
    """The fake server with an empty queue and zeroed counters."""
    fake_model_server_process.reset()
    return fake_model_server_process


PROVIDER_VARIABLES = (
    "PHALANX_MODEL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
    "OPENAI_CUSTOM_HEADERS",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_CUSTOM_HEADERS",
)


@pytest.fixture(autouse=True)
def hermetic_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's real keys or endpoints (nor sends anything to them)."""
    for variable in PROVIDER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
