"""Runs `pipeline` in this process with a fault armed; the chaos tests spawn it.

Usage: python -m tests.chaos.driver STORE_URL RUN_ID INPUTS_JSON FAULTS_JSON

FAULTS_JSON is `{"store": {...}, "clock": {...}}`: keyword arguments for `FaultyStore`
and `FaultyClock`. The lease TTL comes from PHALANX_LEASE_TTL. Prints the outcome as
JSON if the process survives to the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from phalanx import Runtime, SystemClock, store_from_url
from phalanx.testing import FaultyClock, FaultyStore
from tests.chaos.workflows import pipeline


async def main(url: str, run_id: str, inputs: dict[str, object], faults: dict[str, dict]) -> int:
    store = FaultyStore(store_from_url(url), **faults.get("store", {}))
    clock = FaultyClock(SystemClock(), **faults.get("clock", {}))
    lease_ttl = float(os.environ.get("PHALANX_LEASE_TTL", "1.0"))
    async with store:
        runtime = Runtime(store, clock=clock, lease_ttl=lease_ttl)
        outcome = await runtime.run(pipeline, inputs, run_id=run_id)
    print(json.dumps(outcome.to_json()), flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    url, run_id, inputs, faults = sys.argv[1:5]
    sys.exit(asyncio.run(main(url, run_id, json.loads(inputs), json.loads(faults))))
