"""Bugs the simulator found in phalanx itself, each pinned to a seed that showed it.

Each seed failed before its fix (the failure kind is in the test's name) and passes
now; `phalanx simulate MODULE:FUNCTION --seed S --trace` replays it. Seeds are tied to
the world's fault plan and latencies: a change there re-rolls them, and a pinned seed
that stops exercising its fault is caught by the fault assertions below.
"""

from __future__ import annotations

from typing import Any

import pytest

from phalanx.demo._scenario import research
from phalanx.testing import simulate
from tests.orchestration import workflows as orchestration
from tests.peers import workflows as peers

PING_PONG = {"limit": 4}


@pytest.mark.parametrize(
    ("workflow", "inputs", "seed"),
    [
        (research, {}, 8),
        (peers.ping_pong, PING_PONG, 5),
        (orchestration.research_conductor, {}, 1),
    ],
    ids=["research-8", "peers-5", "conductor-1"],
)
def test_a_child_whose_starter_crashed_is_taken_over_not_a_failed_parent(
    workflow: Any, inputs: dict[str, Any], seed: int
) -> None:
    """A crash between taking a child's lease and its RunStarted no longer fails the parent.

    Before: the resumed parent found the child's lease held by its dead predecessor and
    failed with RunExistsError (`internal_error`, `orphan_run`); now, having checked it
    still holds the parent, it takes the child over.
    """
    report = simulate(workflow, inputs, seed=seed)
    assert report.ok, report.failures
    assert report.faults_injected["crash"] >= 2


@pytest.mark.parametrize(
    ("workflow", "inputs", "seed", "fault"),
    [
        (research, {}, 40, "lost_ack"),
        (peers.ping_pong, PING_PONG, 14, "unavailable"),
        (orchestration.research_conductor, {}, 5, "lost_ack"),
    ],
    ids=["research-40", "peers-14", "conductor-5"],
)
def test_an_outage_while_starting_a_child_leaves_the_run_resumable(
    workflow: Any, inputs: dict[str, Any], seed: int, fault: str
) -> None:
    """A store outage under the workflow stops the run resumable instead of failing it.

    Before: a lost acknowledgement (or an outage) while a child run started escaped the
    workflow, which journaled RunFailed for good and left its children running
    (`result_changed`, `orphan_run`); now the runner stops as on a lost lease.
    """
    report = simulate(workflow, inputs, seed=seed)
    assert report.ok, report.failures
    assert report.faults_injected.get(fault, 0) >= 1
