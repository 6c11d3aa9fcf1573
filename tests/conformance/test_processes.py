"""Conformance: real OS processes appending to one stream at once lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import itertools
import sys
import textwrap

from phalanx.journal import EventStore
from tests.conftest import StoreFactory

#: Opens its store, says "ready", waits for "go" on stdin (so every writer starts at
#: once, not one Python start-up after the other), appends, prints its conflict count.
WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from phalanx import ConcurrencyError, NewEvent, store_from_url

    async def main(url, writer, count):
        store = store_from_url(url)
        await store.open()
        conflicts = 0
        try:
            print("ready", flush=True)
            sys.stdin.readline()
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
                        conflicts += 1
                        await asyncio.sleep(0)
        finally:
            await store.close()
        print(conflicts, flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


async def test_processes_appending_to_one_stream(
    store_factory: StoreFactory, store: EventStore
) -> None:
    """Six processes started together race optimistic appends: every event once, seqs 1..N."""
    writers, count = 6, 40
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            store_factory.url,
            str(w),
            str(count),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for w in range(writers)
    ]
    async with asyncio.timeout(90):
        for p in procs:
            assert p.stdout is not None
            assert await p.stdout.readline() == b"ready\n"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            await p.stdin.drain()
        outputs = await asyncio.gather(*(p.communicate() for p in procs))
    assert [p.returncode for p in procs] == [0] * writers
    conflicts = sum(int(out) for out, _ in outputs)
    events = await store.read_stream("shared")
    assert [e.seq for e in events] == list(range(1, writers * count + 1))
    pairs = [(e.data["w"], e.data["i"]) for e in events]
    assert sorted(pairs) == [(w, i) for w in range(writers) for i in range(count)]
    for w in range(writers):
        mine = [i for (ww, i) in pairs if ww == w]
        assert mine == sorted(mine), "each writer's events keep their order"
    switches = sum(a[0] != b[0] for a, b in itertools.pairwise(pairs))
    assert switches > writers - 1 or conflicts > 0, "the processes never raced"
