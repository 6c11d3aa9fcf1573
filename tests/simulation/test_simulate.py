"""`phalanx.testing.simulate`: seeded worlds find planted bugs, and replay them exactly."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.testing import SimulationReport, simulate
from tests.simulation import planted

#: The planted bugs, each with the kinds of failure that give it away: the coin flip
#: shows as a result that moved with a crash, or as two runs of one seed that differ.
PLANTED = [
    (planted.coin_flip, {"nondeterminism", "result_changed"}),
    (planted.unguarded_counter, {"invariant"}),
    (planted.double_debit, {"invariant"}),
]


def _first_failing_seed(report: SimulationReport, kinds: set[str]) -> int:
    seeds = sorted({f.seed for f in report.failures if f.kind in kinds})
    assert seeds, f"no {kinds} failure in {report.seeds_run} seeds: {report.failures[:3]}"
    return seeds[0]


@pytest.mark.parametrize(("workflow", "kinds"), PLANTED, ids=lambda p: getattr(p, "__name__", ""))
def test_a_planted_bug_is_found_within_a_thousand_seeds_and_replays(
    workflow: Any, kinds: set[str]
) -> None:
    """Each planted bug fails a seed below 1,000, and that seed fails the same way again."""
    report = simulate(workflow, seeds=1000, stop_after=1)
    seed = _first_failing_seed(report, kinds)
    if workflow is planted.coin_flip:
        # Nondeterminism cannot replay bit for bit, by definition: each replay of the
        # seed flips its own coins, and about every other one is caught again.
        replays = [simulate(workflow, seed=seed) for _ in range(16)]
        assert any(kinds & {f.kind for f in r.failures} for r in replays)
        return
    # A bug that escaped no seam replays bit for bit: same failures, same trace.
    first, again = simulate(workflow, seed=seed), simulate(workflow, seed=seed)
    assert kinds & {f.kind for f in first.failures}
    assert first.failures == again.failures
    assert first.trace_sha256 == again.trace_sha256 and first.trace == again.trace


@pytest.mark.parametrize(
    "workflow", [planted.fair_coin, planted.guarded_counter, planted.idempotent_debit]
)
def test_the_correct_twin_of_each_planted_bug_passes_every_seed(workflow: Any) -> None:
    """The same workflow written with the seams passes 200 seeds, faults and all."""
    report = simulate(workflow, seeds=200)
    assert report.ok, report.failures[:3]
    assert report.faults_injected["crash"] > 0


def test_a_seed_replays_to_the_same_trace_and_counts_its_faults() -> None:
    """`seed=S` gives the same trace digest every time, and different seeds differ."""
    one, two = simulate(planted.guarded_counter, seed=7), simulate(planted.guarded_counter, seed=7)
    other = simulate(planted.guarded_counter, seed=8)
    assert one.trace_sha256 == two.trace_sha256 != other.trace_sha256
    assert one.seeds_run == 1 and "crash" in one.faults_injected
    assert one.to_json().keys() == {"seeds_run", "faults_injected", "failures", "trace_sha256"}
