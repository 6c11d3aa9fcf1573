"""`python -m phalanx.cli` runs the `phalanx` command."""

from . import main

main()
