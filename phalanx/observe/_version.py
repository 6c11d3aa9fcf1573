"""The installed phalanx version, reported as the instrumentation scope's version."""

from __future__ import annotations

from importlib import metadata

try:
    VERSION = metadata.version("phalanx")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    VERSION = "0.0.0"
