"""A worker whose clock runs SKEW seconds ahead (the chaos tests spawn it).

Usage: python -m tests.fleet.skewed_worker STORE_URL SKEW LEASE_TTL

The store and the runtime both get the skewed clock, as a machine whose clock is
wrong would give them. Runs until SIGTERM, like `phalanx worker`.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from phalanx import Runtime, SystemClock, Worker, store_from_url


class SkewedClock(SystemClock):
    """The system clock, `skew` seconds ahead."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def now(self) -> float:
        """Wall-clock seconds, wrong by `skew`."""
        return super().now() + self.skew


async def main(url: str, skew: float, lease_ttl: float) -> None:
    clock = SkewedClock(skew)
    async with store_from_url(url, clock=clock) as store:
        worker = Worker(Runtime(store, clock=clock, lease_ttl=lease_ttl), poll=0.2)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, worker.shutdown)
        print(f"skewed worker {worker.worker_id} started", file=sys.stderr, flush=True)
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
