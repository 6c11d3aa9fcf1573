"""Fakes for tests and simulations: real behaviour, controllable inputs."""

from .._simloop import SimulatedLoop as SimulatedLoop
from .._simloop import run_simulated as run_simulated
from ._clock import VirtualClock as VirtualClock
from ._entropy import SeededEntropy as SeededEntropy
from ._faults import FaultyClock as FaultyClock
from ._faults import FaultyStore as FaultyStore
from ._faults import sigkill_self as sigkill_self
from ._recorded import load_recorded as load_recorded
from ._recorded import read_recorded as read_recorded
from ._sim_checks import Invariant as Invariant
from ._sim_checks import invariant as invariant
from ._simulate import SimulationFailure as SimulationFailure
from ._simulate import SimulationReport as SimulationReport
from ._simulate import simulate as simulate
