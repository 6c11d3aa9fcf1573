"""Conformance runs on every store, the in-memory one included.

Only this suite adds `memory`: suites above the journal run on the durable stores
(the `backend` fixture of tests/conftest.py), since memory adds no coverage there that
these tests do not give, and would grow their run time by half.
"""

from __future__ import annotations

import pytest

from tests.conftest import BACKENDS

#: Every store, the in-memory one included.
STORES = [*BACKENDS, "memory"]

#: For a test about files, SQL rows or other processes, which an in-memory store has not.
durable_only = pytest.mark.parametrize("backend", BACKENDS)


@pytest.fixture(params=STORES)
def backend(request: pytest.FixtureRequest) -> str:
    """The store backend of this conformance test: "sqlite", "postgres" or "memory"."""
    param: str = request.param
    return param
