"""A process that takes tokens from one shared bucket for a while and prints when.

`python -m tests.fleet.bucket_taker URL KEY START_AT COUNT`: from wall time START_AT,
take COUNT tokens of KEY as fast as the store allows (sleeping as told when the bucket
is empty); print a JSON object: `asked` (wall time before the first take) and `taken`
(the wall time after each token was taken).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from phalanx.journal import open_queue, store_from_url


async def main(url: str, key: str, start_at: float, count: int) -> None:
    async with store_from_url(url) as store:
        queue = open_queue(store)
        await queue.open()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        taken: list[float] = []
        asked = time.time()
        while len(taken) < count:
            wait = await queue.take_token(key)
            assert wait is not None, "the limit is declared before the takers start"
            if wait == 0:
                taken.append(time.time())
            else:
                await asyncio.sleep(wait)
        print(json.dumps({"asked": asked, "taken": taken}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])))
