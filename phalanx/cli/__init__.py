"""The `phalanx` command line."""

from . import _demo as _demo  # registers `phalanx demo`
from ._app import app as app
from ._app import main as main
