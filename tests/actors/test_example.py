"""The README's actor example (examples/actors.py) runs and shows a restart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_actor_example_restarts_the_counter_as_a_new_run() -> None:
    """The first incarnation fails on "crash"; the second counts the mail after it."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "actors.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "team.1.counter#1 failed None",
        "team.1.counter#2 completed 7",
    ]
