"""Conformance: real OS processes appending to one stream at once lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import sys
import textwrap

from phalanx.journal import EventStore
from tests.conftest import StoreFactory

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from phalanx import ConcurrencyError, NewEvent, store_from_url

    async def main(url, writer, count):
        store = store_from_url(url)
        await store.open()
        try:
            for i in range(count):
                while True:
                    version = await store.stream_version("shared")
                    try:
                        await store.append(
                            "shared", [NewEvent("E", {"w": writer, "i": i})],
                            expected_version=version,
                        )
                        break
                    except ConcurrencyError:
                        await asyncio.sleep(0)
        finally:
            await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


async def test_processes_appending_to_one_stream(
    store_factory: StoreFactory, store: EventStore
) -> None:
    """Six processes race optimistic appends: every event once, seqs 1..N contiguous."""
    writers, count = 6, 40
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, store_factory.url, str(w), str(count)
        )
        for w in range(writers)
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), timeout=90)
    assert codes == [0] * writers
    events = await store.read_stream("shared")
    assert [e.seq for e in events] == list(range(1, writers * count + 1))
    pairs = [(e.data["w"], e.data["i"]) for e in events]
    assert sorted(pairs) == [(w, i) for w in range(writers) for i in range(count)]
    for w in range(writers):
        mine = [i for (ww, i) in pairs if ww == w]
        assert mine == sorted(mine), "each writer's events keep their order"
