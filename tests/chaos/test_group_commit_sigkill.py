"""Chaos: processes whose appends share commits are SIGKILLed mid-stream.

Each process runs many writers at once, so its appends are group-committed, some of
them refused (a stale expected version) in the same batches. After the kill, every
append a writer was told had committed is in the journal, every append there is whole
(all its events, in order), and no refused append left anything behind.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from collections import defaultdict

import pytest

from phalanx import store_from_url

pytestmark = pytest.mark.slow

#: Writers append 3-event appends to their own stream forever, printing each
#: acknowledged one; every 4th round they also try a stale append, which must fail.
WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from phalanx import ConcurrencyError, NewEvent, store_from_url

    async def writer(store, name):
        k = 0
        while True:
            if k % 4 == 3:
                try:
                    await store.append(name, [NewEvent("Refused")], expected_version=0)
                    print("ACCEPTED", name, flush=True)
                except ConcurrencyError:
                    pass
            events = [NewEvent("Part", {"k": k, "part": p}) for p in range(3)]
            await store.append(name, events, expected_version=3 * k)
            print(name, k, flush=True)
            k += 1

    async def main(url, process, writers):
        store = store_from_url(url)
        await store.open()
        print("ready", flush=True)
        async with asyncio.TaskGroup() as group:
            for w in range(writers):
                group.create_task(writer(store, f"p{process}-w{w}"))

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)

WRITERS = 20


async def test_sigkill_mid_batch_loses_no_acknowledged_append_and_halves_none(
    url: str,
) -> None:
    """Two processes of 20 writers, killed mid-stream: acked appends all there, none torn."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            url,
            str(p),
            str(WRITERS),
            stdout=asyncio.subprocess.PIPE,
        )
        for p in range(2)
    ]
    acked: dict[str, int] = defaultdict(lambda: -1)

    async def read_until_killed(proc: asyncio.subprocess.Process, kill_after: int) -> None:
        assert proc.stdout is not None
        seen = 0
        while line := await proc.stdout.readline():
            if not line.endswith(b"\n"):
                break  # the last line, cut short by the kill: not an acknowledgement
            words = line.decode().split()
            assert words[0] != "ACCEPTED", f"a stale append was accepted: {words}"
            if words == ["ready"]:
                continue
            acked[words[0]] = max(acked[words[0]], int(words[1]))
            seen += 1
            if seen == kill_after:
                proc.send_signal(signal.SIGKILL)  # mid-stream: batches are in flight
        assert await proc.wait() == -signal.SIGKILL

    async with asyncio.timeout(120):
        await asyncio.gather(read_until_killed(procs[0], 400), read_until_killed(procs[1], 700))

    store = store_from_url(url)
    await store.open()
    try:
        for p in range(2):
            for w in range(WRITERS):
                name = f"p{p}-w{w}"
                events = await store.read_stream(name)
                assert all(e.type == "Part" for e in events), f"{name}: a refused append is there"
                assert len(events) % 3 == 0, f"{name}: a torn append ({len(events)} events)"
                parts = [(e.data["k"], e.data["part"]) for e in events]
                appends = len(events) // 3
                assert parts == [(k, p) for k in range(appends) for p in range(3)]
                # Everything acknowledged is there (and at most one more, committed
                # before the kill but not yet acknowledged).
                assert acked[name] + 1 <= appends <= acked[name] + 2, (name, acked[name])
        assert sum(acked.values()) + len(acked) >= 1100  # both really ran before the kill
    finally:
        await store.close()
