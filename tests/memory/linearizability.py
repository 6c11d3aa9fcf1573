"""A Wing & Gong linearizability checker for one compare-and-set register, and its recorder.

A history is every operation's invocation and response, with the time of each
(`time.monotonic_ns`, one clock for every thread and process of the machine). It is
linearizable if the operations can be put in one order that respects real time (an
operation that returned before another was invoked comes first) and in which each
result is what a single, sequential register would have answered. The search tries,
depth first, every operation that may come next (one invoked before the earliest
response among those left), applies it to the sequential model, and backtracks on a
mismatch; Lowe's memo of (operations left, register state) keeps it polynomial on the
histories these tests record.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from typing import Any, Literal

#: The register's state: (JSON text of the value, version).
State = tuple[str, int]


@dataclass(frozen=True)
class Op:
    """One operation as a client saw it.

    `read`: `result` is `["value", value, version]`. `cas`: `based_on` and `value` are
    the arguments; `result` is `["ok", version]` or `["conflict", current_version]`.
    """

    client: str
    kind: Literal["read", "cas"]
    invoked: int
    returned: int
    result: list[Any]
    based_on: int = 0
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Op:
        return cls(**data)


def _apply(state: State, op: Op) -> State | None:
    """The register after `op`, or None if a sequential register would not answer so."""
    text, version = state
    if op.kind == "read":
        ok = op.result == ["value", json.loads(text), version]
        return state if ok else None
    if op.based_on == version:
        return (json.dumps(op.value), version + 1) if op.result == ["ok", version + 1] else None
    return state if op.result == ["conflict", version] else None


def check(history: list[Op], initial: tuple[Any, int]) -> bool:
    """Whether `history` (every operation completed) is linearizable from `initial`."""
    ops = sorted(history, key=lambda o: o.invoked)
    seen: set[tuple[frozenset[int], State]] = set()
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(ops) + 1000))

    def search(left: frozenset[int], state: State) -> bool:
        if not left:
            return True
        if (left, state) in seen:
            return False
        first_return = min(ops[i].returned for i in left)
        for i in sorted(left):
            if ops[i].invoked > first_return:
                break  # sorted by invocation: every later one is too late as well
            after = _apply(state, ops[i])
            if after is not None and search(left - {i}, after):
                return True
        seen.add((left, state))
        return False

    return search(frozenset(range(len(ops))), (json.dumps(initial[0]), initial[1]))


async def run_client(
    url: str, name: str, client: str, plan: list[str], pauses: list[float]
) -> list[Op]:
    """Run `plan` (`read` / `cas` steps) against memory `name`; the history it saw.

    Each `cas` is based on the last version this client saw (read or carried by a
    conflict), and writes a value unique to the client and step.
    """
    import asyncio

    from phalanx import MemoryConflictError
    from phalanx.journal import store_from_url
    from phalanx.memory import Memory

    store = store_from_url(url)
    await store.open()
    try:
        register = Memory(store, name, agent=client, timeout=60).linearizable()
        version = 1
        history: list[Op] = []
        for step, (kind, pause) in enumerate(zip(plan, pauses, strict=True)):
            await asyncio.sleep(pause)
            invoked = time.monotonic_ns()
            if kind == "read":
                seen = await register.read("x")
                version = seen.version
                result: list[Any] = ["value", seen.value, seen.version]
                history.append(Op(client, "read", invoked, time.monotonic_ns(), result))
                continue
            value, based_on = f"{client}-{step}", version
            try:
                written = await register.cas("x", value, based_on=based_on)
                result, version = ["ok", written.version], written.version
            except MemoryConflictError as conflict:
                result, version = ["conflict", conflict.current_version], conflict.current_version
            returned = time.monotonic_ns()
            history.append(Op(client, "cas", invoked, returned, result, based_on, value))
        return history
    finally:
        await store.close()


def main() -> None:
    """A client in a process of its own: `python -m tests.memory.linearizability URL NAME ...`."""
    import asyncio

    url, name, client, plan, pauses = sys.argv[1:6]
    history = asyncio.run(run_client(url, name, client, json.loads(plan), json.loads(pauses)))
    print(json.dumps([op.to_json() for op in history]))


if __name__ == "__main__":
    main()
