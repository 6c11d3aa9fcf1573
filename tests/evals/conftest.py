"""The real fake-model HTTP server for the judge test against a real endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..models.fake_openai_server import FakeModelServer, start_fake_openai_server


@pytest.fixture(scope="session")
def model_server_process() -> Iterator[FakeModelServer]:
    """The fake OpenAI-compatible server subprocess, started once."""
    with start_fake_openai_server() as server:
        yield server


@pytest.fixture
def model_server(model_server_process: FakeModelServer) -> FakeModelServer:
    """The server with an empty queue."""
    model_server_process.reset()
    return model_server_process
