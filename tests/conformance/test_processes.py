"""Conformance: real OS processes appending to one stream at once lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import sys
import textwrap

from phalanx.journal import EventStore
from tests.conformance.conftest import durable_only
from tests.conftest import StoreFactory

#: Each round: read the stream's version, say "ready", wait for "go" on stdin, then
#: append (re-reading the version after each conflict). The test says "go" once every
#: writer is ready, so every round is a real race between processes; at the end the
#: writer prints how many conflicts it met.
WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from phalanx import ConcurrencyError, NewEvent, store_from_url

    async def main(url, writer, rounds):
        store = store_from_url(url)
        await store.open()
        conflicts = 0
        try:
            for i in range(rounds):
                version = await store.stream_version("shared")
                print("ready", flush=True)
                sys.stdin.readline()
                while True:
                    try:
                        await store.append(
                            "shared", [NewEvent("E", {"w": writer, "i": i})],
                            expected_version=version,
                        )
                        break
                    except ConcurrencyError:
                        conflicts += 1
                        version = await store.stream_version("shared")
        finally:
            await store.close()
        print(conflicts, flush=True)

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    """
)


@durable_only
async def test_processes_appending_to_one_stream(
    store_factory: StoreFactory, store: EventStore
) -> None:
    """Six processes race optimistic appends round by round: every event once, seqs 1..N."""
    writers, rounds = 6, 10
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            store_factory.url,
            str(w),
            str(rounds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for w in range(writers)
    ]
    async with asyncio.timeout(120):
        for _ in range(rounds):
            for p in procs:
                assert p.stdout is not None
                assert await p.stdout.readline() == b"ready\n"
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(b"go\n")
                await p.stdin.drain()
        outputs = await asyncio.gather(*(p.communicate() for p in procs))
    assert [p.returncode for p in procs] == [0] * writers
    events = await store.read_stream("shared")
    assert [e.seq for e in events] == list(range(1, writers * rounds + 1))
    pairs = [(e.data["w"], e.data["i"]) for e in events]
    # A writer reads the version only after its previous append, so every round's
    # events come together, one per writer: the processes interleaved...
    for i in range(rounds):
        chunk = pairs[i * writers : (i + 1) * writers]
        assert sorted(chunk) == [(w, i) for w in range(writers)], chunk
    # ...and all of a round's writers read one version, so all but one conflicted.
    assert sum(int(out) for out, _ in outputs) >= (writers - 1) * rounds
