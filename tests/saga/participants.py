"""Serves some of the `relay` choreography's participants in this process until killed.

Usage: python -m tests.saga.participants STORE_URL STEP[,STEP...]
"""

from __future__ import annotations

import asyncio
import sys

from phalanx import store_from_url
from tests.saga.workflows import CHOREOGRAPHY


async def main(url: str, steps: list[str]) -> None:
    store = store_from_url(url)
    await store.open()
    try:
        print(f"serving {','.join(steps)}", flush=True)
        await CHOREOGRAPHY.serve(store, steps)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2].split(",")))
