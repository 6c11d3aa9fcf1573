"""Runs or resumes `crash_loop` with a given crash limit; the crash-loop test spawns it.

Usage: python -m tests.chaos.crash_loop_driver STORE_URL RUN_ID LEDGER CRASH_LIMIT run|resume

Prints the outcome as JSON if the process survives to the end (exit 0 completed, 1
failed).
"""

from __future__ import annotations

import asyncio
import json
import sys

from phalanx import open_runtime
from tests.chaos.workflows import crash_loop


async def main(url: str, run_id: str, ledger: str, limit: int, mode: str) -> int:
    async with open_runtime(url, lease_ttl=30.0, crash_limit=limit) as runtime:
        if mode == "run":
            outcome = await runtime.run(crash_loop, {"ledger": ledger}, run_id=run_id)
        else:
            outcome = await runtime.resume(run_id, force=True)
    print(json.dumps(outcome.to_json()), flush=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    url, run_id, ledger, limit, mode = sys.argv[1:6]
    sys.exit(asyncio.run(main(url, run_id, ledger, int(limit), mode)))
