"""Chaos: a worker cut off from PostgreSQL by a network partition (namespaces, veth).

Worker A runs in a network namespace of its own, B in another; each reaches the
test's own PostgreSQL over its veth pair. A's link is cut mid-run: A can no longer
write, its runs' leases lapse and B carries them on. When the link heals, A finds
itself fenced or out of its leases and writes nothing, so nothing is applied twice;
it stops cleanly on SIGTERM. On a machine that cannot make namespaces the test says
so, and fails in CI.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.chaos.harness import poll_until, wait_exit, workspace
from tests.fleet.harness import Fleet
from tests.fleet.netns import cluster_on, links

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(400)]

LEASE_TTL = 2.0
RUNS = 3


def test_a_partitioned_worker_is_taken_over_and_applies_nothing_twice(tmp_path: Path) -> None:
    """Link cut mid-run: runs finish on the other side; healed: the old worker writes nothing."""
    with links(2) as (link_a, link_b), cluster_on([link_a, link_b]) as cluster:
        schema = "fleet_partition"
        local = f"{cluster.url}?schema={schema}"
        with workspace(tmp_path, local) as ws:
            fleet = Fleet(ws, LEASE_TTL)
            for i in range(RUNS):
                fleet.submit(f"n{i}", count=10, seconds=0.3)

            def over(link_url: str) -> Fleet:
                ws.url = link_url
                return fleet

            url_a = f"postgresql://postgres@{link_a.server_address}:{cluster.port}/postgres"
            url_b = f"postgresql://postgres@{link_b.server_address}:{cluster.port}/postgres"
            a = over(f"{url_a}?schema={schema}").worker(
                "a", "--concurrency", str(RUNS), prefix=link_a.prefix
            )
            ws.url = local
            fleet.wait_effects(2 * RUNS)
            link_a.cut()
            b = over(f"{url_b}?schema={schema}").worker(
                "b", "--concurrency", str(RUNS), prefix=link_b.prefix
            )
            ws.url = local
            journals = fleet.wait_completed(180)
            for run_id, events in journals.items():
                assert events[-1]["epoch"] == 2, run_id  # carried on by B
            link_a.heal()
            # A gives each run up: its lease ran out while cut off, or it is fenced.
            poll_until(
                lambda: a.stderr.count("stopped run") >= RUNS,
                120,
                "the cut-off worker to stop its runs",
                interval=0.5,
            )
            time.sleep(1.0)  # room for any write A might still (wrongly) make
            after = fleet.journals()
            assert after == journals, "the cut-off worker wrote after the takeover"
            fleet.check_exactly_once(after)
            fleet.check_fenced_after_takeover(after)
            for proc in (a, b):
                proc.popen.send_signal(signal.SIGTERM)
                assert wait_exit(proc, 60) == 0, proc.describe()
                assert "Traceback" not in proc.stderr
