"""Runs a saga workflow in this process with a store fault armed; the saga chaos tests spawn it.

Usage: python -m tests.saga.driver STORE_URL RUN_ID WORKFLOW INPUTS_JSON FAULTS_JSON

WORKFLOW is `run_saga` or `run_choreography` (from tests.saga.workflows); FAULTS_JSON
holds keyword arguments for `FaultyStore`. Prints the outcome as JSON if the process
survives to the end.
"""

from __future__ import annotations

import asyncio
import json
import sys

from phalanx import Runtime, store_from_url
from phalanx.testing import FaultyStore
from tests.saga import workflows


async def main(url: str, run_id: str, name: str, inputs: dict[str, object], faults: dict) -> int:
    store = FaultyStore(store_from_url(url), **faults)
    async with store:
        runtime = Runtime(store, lease_ttl=1.0)
        outcome = await runtime.run(getattr(workflows, name), inputs, run_id=run_id)
    print(json.dumps(outcome.to_json()), flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    url, run_id, name, inputs, faults = sys.argv[1:6]
    sys.exit(asyncio.run(main(url, run_id, name, json.loads(inputs), json.loads(faults))))
