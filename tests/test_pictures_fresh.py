"""The README's pictures (docs/pictures/*.svg) are what `scripts/pictures` makes today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_pictures_are_up_to_date() -> None:
    """Regenerating from the recorded journal gives the committed files byte for byte."""
    done = subprocess.run(
        [sys.executable, "scripts/pictures.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pictures are up to date" in done.stdout
