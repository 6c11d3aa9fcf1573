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

from ._simloop import simulated_loop


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
    """The operating system's randomness; seeded while a `SimulatedLoop` runs.

    Under simulation every draw comes from the loop's seeded generator, so the ids
    and random numbers of a whole simulated run replay with its seed.
    """

    def __init__(self) -> None:
        self._random = random.SystemRandom()

    def random(self) -> float:
        """Return a float in [0, 1)."""
        sim = simulated_loop()
        return self._random.random() if sim is None else sim.entropy.random()

    def token(self, nbytes: int = 8) -> str:
        """Return a random hex token."""
        sim = simulated_loop()
        if sim is None:
            return secrets.token_hex(nbytes)
        return f"{sim.entropy.getrandbits(nbytes * 8):0{nbytes * 2}x}"

    def uuid(self) -> str:
        """Return a random UUID4 string."""
        sim = simulated_loop()
        if sim is None:
            return str(uuid.uuid4())
        return str(uuid.UUID(int=sim.entropy.getrandbits(128), version=4))
