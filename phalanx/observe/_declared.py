"""The declared topology of an agent system, read from code without running it.

What can be known statically is what objects declare: an `Agent`'s name, role, model
and tools; a tool's name and reliability settings (timeout, retries, breaker,
dead-letter policy); a list or dict of agents. A workflow is different: its fan-outs,
branches, child runs and the agents it builds are decided by its code as it runs, so
they cannot be known without running it. For a workflow this draws what its module
declares (agents and tools defined at module level, which it may use) and says in
the picture, as a note, what it cannot know and how to see it (draw a recorded run).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from .._errors import TopologyError
from ..agents import Agent
from ..durable import is_workflow
from ..tools import Tool
from ._graph import Graph, Node

_WORKFLOW_NOTE = (
    "A workflow's fan-outs, branches, child runs and the agents it builds are decided "
    "by its code as it runs: they cannot be known statically. Draw a recorded run with "
    "`phalanx diagram RUN -o FILE` to see the topology it took."
)


def load_object(ref: str) -> Any:
    """Import `MODULE:OBJECT` (MODULE from the current directory or PYTHONPATH).

    Raises:
        TopologyError: not MODULE:OBJECT, or it cannot be imported.
    """
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise TopologyError(ref=ref, reason="expected MODULE:OBJECT")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time error of user code is reported, not raised
        raise TopologyError(ref=ref, reason=f"importing {module_name} failed: {exc!r}") from exc
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError as exc:
            raise TopologyError(ref=ref, reason=f"{module_name} has no {attr!r}") from exc
    return value


def _tool_label(tool: Tool) -> str:
    parts = [f"tool {tool.name}"]
    if tool.timeout is not None:
        parts.append(f"timeout {tool.timeout:g}s")
    if tool.retry is not None:
        parts.append(f"{tool.retry.max_attempts} attempts")
    if tool.breaker is not None:
        parts.append("circuit breaker")
    parts.append(f"on failure: {tool.dead_letter}")
    return "\n".join(parts)


def _add_tool(graph: Graph, tool: Tool) -> str:
    return graph.add(Node(f"tool_{tool.name}", "tool", _tool_label(tool)))


def _add_agent(graph: Graph, agent: Agent[Any]) -> str:
    model = f"{agent.model.provider}:{agent.model.name}"
    label = f"agent {agent.name}" + (f"\nrole {agent.role}" if agent.role else "")
    label += f"\nmodel {model}\nmax {agent.max_turns} turns"
    node = graph.add(Node(f"agent_{agent.name}", "agent", label))
    for tool in agent.tools.values():
        graph.link(node, _add_tool(graph, tool), "may call")
    return node


def _add(graph: Graph, value: Any, ref: str) -> None:
    if isinstance(value, Agent):
        _add_agent(graph, value)
    elif isinstance(value, Tool):
        _add_tool(graph, value)
    elif is_workflow(value):
        name = getattr(value, "__qualname__", ref)
        node = graph.add(Node(f"workflow_{name}", "run", f"workflow {name}"))
        module = sys.modules.get(getattr(value, "__module__", ""))
        found = [v for v in vars(module).values() if isinstance(v, (Agent, Tool))] if module else []
        for item in found:
            target = _add_agent(graph, item) if isinstance(item, Agent) else _add_tool(graph, item)
            graph.link(node, target, "declared in its module")
        graph.notes.append(_WORKFLOW_NOTE)
    elif isinstance(value, Mapping) and value:
        for item in value.values():
            _add(graph, item, ref)
    elif isinstance(value, Sequence) and not isinstance(value, str) and value:
        for item in value:
            _add(graph, item, ref)
    else:
        raise TopologyError(
            ref=ref, reason=f"a {type(value).__name__} declares no topology phalanx can read"
        )


def declared_graph(ref: str) -> Graph:
    """The declared topology of the object `MODULE:OBJECT` names.

    Raises:
        TopologyError: it cannot be imported, or declares nothing drawable.
    """
    graph = Graph(f"declared topology of {ref} (not a run)")
    _add(graph, load_object(ref), ref)
    return graph
