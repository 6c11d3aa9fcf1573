"""Entropy from a seed, so a simulated run draws the same numbers every time."""

from __future__ import annotations

import random
import uuid


class SeededEntropy:
    """A deterministic `Entropy`: the same seed gives the same sequence."""

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)

    def random(self) -> float:
        """Return the next float in [0, 1)."""
        return self._random.random()

    def token(self, nbytes: int = 8) -> str:
        """Return the next hex token."""
        return self._random.randbytes(nbytes).hex()

    def uuid(self) -> str:
        """Return the next UUID4-shaped string."""
        return str(uuid.UUID(bytes=self._random.randbytes(16), version=4))
