"""Fakes for tests and simulations: real behaviour, controllable inputs."""

from ._clock import VirtualClock as VirtualClock
from ._entropy import SeededEntropy as SeededEntropy
