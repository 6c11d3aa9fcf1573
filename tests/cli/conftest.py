"""The `cli` fixture: a `phalanx` runner in the test's own directory and store."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import Cli, make_cli


@pytest.fixture
def cli(tmp_path: Path, url: str) -> Cli:
    """`phalanx` in a fresh directory holding `cliflows.py`, on the test's store."""
    return make_cli(tmp_path, url)
