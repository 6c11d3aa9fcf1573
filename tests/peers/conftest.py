"""Fixtures for the peers tests (runtimes come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import LEASE_TTL
from tests.peers import workflows

#: Peers hand messages on through inboxes: poll them faster than the default.
INBOX_POLL = 0.01


@pytest.fixture(autouse=True)
def _fresh_workflow_state() -> Iterator[None]:
    workflows.reset()
    yield
    workflows.reset()


@pytest.fixture
def runtime_options() -> dict[str, Any]:
    """Peers' runtimes poll their inboxes faster."""
    return {"lease_ttl": LEASE_TTL, "inbox_poll": INBOX_POLL}
