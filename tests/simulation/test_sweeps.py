"""The project simulates itself: the research demo and each pattern, hundreds of seeds each.

A failure found here becomes a regression test pinned to its seed (test_regressions.py).
The long sweep (thousands of seeds) is `benchmarks/sim.py --seeds 10000`. The
choreographed saga is not here: its participants run beside the run, outside it, and a
simulated world hosts the run alone.
"""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.demo._budget import budget_demo
from phalanx.demo._memory import memory_demo
from phalanx.demo._saga import saga_demo
from phalanx.demo._scenario import research
from phalanx.demo._vote import vote_demo
from phalanx.testing import simulate
from tests.orchestration import workflows as orchestration
from tests.patterns import workflows as patterns
from tests.peers import workflows as peers

SWEEPS: dict[str, tuple[Any, dict[str, Any], int]] = {
    "research demo": (research, {}, 200),
    "gather": (
        patterns.fan_out,
        {
            "branches": {
                "fast": {"kind": "answer", "label": "fast", "value": 1, "delay": 0.2},
                "slow": {"kind": "answer", "label": "slow", "value": 2, "delay": 1.5},
                "hung": {"kind": "hang", "label": "hung"},
            },
            "policy": "quorum:2",
            "deadline": 3.0,
            "accept": True,
        },
        100,
    ),
    "peers": (peers.ping_pong, {"limit": 4}, 100),
    "vote (demo vote)": (vote_demo, {}, 100),
    "saga (demo saga --fault fact_check=error)": (
        saga_demo,
        {"faults": {"fact_check": "error"}},
        100,
    ),
    "memory (demo memory)": (memory_demo, {}, 100),
    "budget (demo budget)": (budget_demo, {}, 100),
    "conductor": (orchestration.research_conductor, {}, 100),
    "hierarchy": (
        orchestration.top_orchestrator,
        {
            "policy": "cancel",
            "members": {
                "a": {"kind": "worker", "label": "a", "value": 1},
                "b": {"kind": "worker", "label": "b", "value": 2, "delay": 0.5},
            },
        },
        100,
    ),
}


@pytest.mark.parametrize("name", list(SWEEPS))
def test_every_seed_passes(name: str) -> None:
    """Every seed of the sweep ends terminal or parked, replays alike and keeps every check."""
    workflow, inputs, seeds = SWEEPS[name]
    report = simulate(workflow, inputs, seeds=seeds)
    assert report.ok, "\n".join(f"seed {f.seed} {f.kind}: {f.message}" for f in report.failures)
    assert report.seeds_run == seeds and report.faults_injected["crash"] > 0
