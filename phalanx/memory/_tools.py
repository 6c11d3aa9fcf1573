"""Memory as tools an agent's model can call: read, write, compare-and-set (and search).

They are ordinary phalanx tools (`phalanx.tools.tool`): a JSON schema from their
signature, arguments validated before anything runs, each call a journaled step. What
the model gets back is a JSON object it can act on:

- `memory_read`: the value with its `version` (and `staleness` for eventual reads);
  an unknown key is `{"status": "unknown_key"}`, not an exception.
- `memory_write` creates a key; `memory_compare_and_set` replaces a value *based on the
  version the model read*. A stale one is `{"status": "conflict", "current_version",
  "current_value", "advice"}`: the model sees what changed and merges, instead of
  overwriting (the lost update).
- `memory_search` (given a `Recall` index): ranked keys for a full-text query.

Writes are idempotent tools: the step's idempotency key is the request id, so a step
re-run after a crash is answered once by the manager.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .._errors import MemoryConflictError, MemoryVersionError, UnknownMemoryKeyError
from ..durable import WorkflowContext
from ..tools import Tool, tool
from ._client import Memory, Submitter
from ._handles import Written, outcome_result, settle
from ._workflow import in_run

if TYPE_CHECKING:
    from ..journal import EventStore
    from ._recall import Recall

ReadModel = Literal["linearizable", "eventual"]

#: What the model reads about each tool.
READ = (
    "Read one key of the shared memory: its JSON value and its version. Pass that "
    "version as based_on when you change the key with memory_compare_and_set."
)
WRITE = (
    "Create a new key in the shared memory with a JSON value. If the key exists, "
    "nothing is written and you get its current value and version."
)
CAS = (
    "Replace a key's value, based on the version you read. If someone changed it since, "
    "nothing is written and you get the current value and version to merge with."
)
SEARCH = "Search the shared memory's documents by full text; returns the best matching keys."


def _written(written: Written) -> dict[str, Any]:
    return {"status": "written", "key": written.key, "version": written.version}


def _conflict(conflict: MemoryConflictError) -> dict[str, Any]:
    return {
        "status": "conflict",
        "key": conflict.key,
        "based_on": conflict.based_on,
        "current_version": conflict.current_version,
        "current_value": conflict.current_value,
        "advice": (
            "Someone changed this key after you read it; nothing was written. Merge your "
            "change into current_value and call memory_compare_and_set again with "
            "based_on=current_version."
        ),
    }


def _refused(error: MemoryVersionError) -> dict[str, Any]:
    return {
        "status": "refused",
        "key": error.key,
        "based_on": error.based_on,
        "current_version": error.current_version,
        "advice": "That version never existed: read the key and base the write on its version.",
    }


def _unknown(error: UnknownMemoryKeyError) -> dict[str, Any]:
    return {
        "status": "unknown_key",
        "key": error.key,
        "advice": "No such key: create it with memory_write.",
    }


async def _attempt_write(
    memory: Memory, key: str, value: Any, based_on: int, request: str | None
) -> dict[str, Any]:
    outcome = await memory.send(request, "cas", key, value, based_on)
    try:
        written = settle(memory, key, await outcome_result(memory, outcome))
    except MemoryConflictError as conflict:
        return _conflict(conflict)
    except MemoryVersionError as refused:
        return _refused(refused)
    return _written(written)


def memory_tools(
    where: WorkflowContext | EventStore,
    name: str,
    *,
    agent: str | None = None,
    manager: Submitter | None = None,
    reads: ReadModel = "linearizable",
    recall: Recall | None = None,
    timeout: float = 30.0,
) -> list[Tool]:
    """The tools that let an agent's model read and write shared memory `name`.

    Example::

        @phalanx.workflow
        async def planner(ctx):
            tools = memory_tools(ctx, "plan", agent="planner")
            agent = Agent("planner", model=model, tools=tools, instructions=...)
            return (await agent.run(ctx, "Add your finding to the plan")).text

    `where` is the workflow the agent runs in (its run authors the writes) or a store.
    `reads` is the model the read tool declares: `linearizable` (every acknowledged
    write) or `eventual` (this process's projection, with its staleness). With a
    `recall` index, `memory_search` is offered too.
    """
    if isinstance(where, WorkflowContext):
        memory = in_run(where, name, agent=agent, manager=manager, timeout=timeout, journal=False)
    else:
        memory = Memory(where, name, agent=agent, manager=manager, timeout=timeout)

    @tool(name="memory_read", description=READ)
    async def memory_read(key: str) -> dict[str, Any]:
        """Read one key."""
        handle = memory.linearizable() if reads == "linearizable" else memory.eventual()
        try:
            read = await handle.read(key)
        except UnknownMemoryKeyError as error:
            return _unknown(error)
        return {"status": "ok", **read.to_json()}

    @tool(name="memory_write", description=WRITE, idempotent=True)
    async def memory_write(
        key: str, value: Any, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Create one key."""
        return await _attempt_write(memory, key, value, 0, idempotency_key)

    @tool(name="memory_compare_and_set", description=CAS, idempotent=True)
    async def memory_compare_and_set(
        key: str, value: Any, based_on: int, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Replace one key's value, based on a version."""
        return await _attempt_write(memory, key, value, based_on, idempotency_key)

    tools = [memory_read, memory_write, memory_compare_and_set]
    if recall is not None:
        index = recall

        @tool(name="memory_search", description=SEARCH)
        async def memory_search(query: str, limit: int = 5) -> dict[str, Any]:
            """Search by full text."""
            await index.sync(memory.store, name)
            hits = await index.search(name, query, limit=limit)
            return {"status": "ok", "hits": [hit.to_json() for hit in hits]}

        tools.append(memory_search)
    return tools
