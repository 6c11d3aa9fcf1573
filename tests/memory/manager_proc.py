"""A memory manager in a process of its own, for the chaos tests to kill or pause.

`python -m tests.memory.manager_proc URL NAME TTL` prints `ready EPOCH` once it
serves, and `fenced` (exit 3) once the store refused it for a larger epoch.
"""

from __future__ import annotations

import asyncio
import sys

from phalanx.journal import store_from_url
from phalanx.memory import open_memory_manager


async def main(url: str, name: str, ttl: float) -> int:
    store = store_from_url(url)
    await store.open()
    try:
        async with open_memory_manager(store, name, lease_ttl=ttl, poll=0.005) as manager:
            print(f"ready {manager.epoch}", flush=True)
            print(f"fenced: {await manager.until_fenced()}", flush=True)
            return 3
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]))))
