"""Fixtures for the durable layer's tests (runtimes come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import INBOX_POLL, LEASE_TTL
from tests.durable import workflows


@pytest.fixture
def runtime_options() -> dict[str, Any]:
    """The shared defaults, with step starts held far longer than any test step runs.

    A start written alone after the default 50 ms would change a journal's shape with
    the machine's load; tests of that early write open a runtime with a short hold.
    """
    return {"lease_ttl": LEASE_TTL, "inbox_poll": INBOX_POLL, "start_hold": 3600.0}


@pytest.fixture(autouse=True)
def _fresh_workflow_state() -> Iterator[None]:
    workflows.reset()
    yield
    workflows.reset()
