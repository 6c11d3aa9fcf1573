"""The entropy seam: the only place phalanx draws random numbers or makes ids.

Runtime code takes an `Entropy` so a seeded simulation can reproduce a whole run
(`phalanx.testing.SeededEntropy`); workflow code goes further and uses
`ctx.random()` / `ctx.uuid()`, which are journaled and replayed.
"""

from __future__ import annotations

import random
import secrets
import uuid
from typing import Protocol, runtime_checkable


@runtime_checkable
class Entropy(Protocol):
    """Source of randomness and unique ids."""

    def random(self) -> float:
        """A float uniformly drawn from [0, 1)."""
        ...

    def token(self, nbytes: int = 8) -> str:
        """A random lowercase hex string of `2 * nbytes` characters."""
        ...

    def uuid(self) -> str:
        """A random (version 4) UUID as a string."""
        ...


class SystemEntropy:
    """The operating system's randomness."""

    def __init__(self) -> None:
        self._random = random.SystemRandom()

    def random(self) -> float:
        """Return a float in [0, 1)."""
        return self._random.random()

    def token(self, nbytes: int = 8) -> str:
        """Return a random hex token."""
        return secrets.token_hex(nbytes)

    def uuid(self) -> str:
        """Return a random UUID4 string."""
        return str(uuid.uuid4())
