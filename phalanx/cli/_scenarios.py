"""The registry of `phalanx demo SCENARIO` scenarios other than the research one.

Each scenario (memory, saga, vote, budget) lives in a module of its own that registers
a function here; `phalanx demo` parses the options every scenario shares and hands
them over as one `DemoRequest`, so adding a scenario never edits the command itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: The scenario `phalanx demo` runs when none is named.
RESEARCH = "research"


@dataclass(frozen=True, kw_only=True)
class DemoRequest:
    """What the command line asked of a scenario.

    `faults` is every `--fault` value as typed (None when none was given), to be
    parsed by the scenario, which alone knows what may fail in it; `style` is
    `--style`, None unless given.
    """

    faults: list[str] | None
    style: str | None
    run_id: str | None
    store: str | None
    lease_ttl: float
    as_json: bool


#: Runs a scenario; it prints its report and raises `typer.Exit` with the exit code.
Scenario = Callable[[DemoRequest], None]

_SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    """Register the decorated function as `phalanx demo NAME`."""

    def register(run: Scenario) -> Scenario:
        if name in _SCENARIOS or name == RESEARCH:
            raise ValueError(f"demo scenario {name!r} is registered twice")
        _SCENARIOS[name] = run
        return run

    return register


def names() -> list[str]:
    """Every scenario's name, the research one first."""
    return [RESEARCH, *sorted(_SCENARIOS)]


def lookup(name: str) -> Scenario | None:
    """The scenario registered as `name`, or None (also for the research one)."""
    return _SCENARIOS.get(name)
