"""A topology as a small graph, and that graph as Graphviz DOT and as Mermaid text.

`run_graph(model)` is the topology a recorded run actually took: the run, its
fan-outs (policy, deadline, verdict), each branch and child run with its outcome,
the agents and the tools they called (with call and failure counts), decisions,
compensations and any pattern operation by its kind. `_declared.py` builds the same
kind of graph from code, without running it. Both writers put every node's outcome
in its label as words, and draw trouble (failed, timed out, cancelled) dashed and
bold too, so the outcome survives a grey-scale print and a text search of the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ._model import Lane, RunModel
from ._runview import TROUBLE
from ._story import outcome_word, seconds

NodeKind = Literal[
    "run", "branch", "child", "agent", "tool", "fanout", "decision", "op", "model", "note"
]


@dataclass(frozen=True)
class Node:
    """A box in the diagram; `outcome` is None where a node has none (a declared agent)."""

    id: str
    kind: NodeKind
    label: str
    outcome: str | None = None

    @property
    def trouble(self) -> bool:
        """Whether the node's outcome is failed, timed out or cancelled."""
        return self.outcome in TROUBLE


@dataclass(frozen=True)
class Edge:
    """An arrow from `source` to `target`, optionally labelled."""

    source: str
    target: str
    label: str = ""


@dataclass
class Graph:
    """Nodes, edges, a title and notes (what a declared topology cannot know)."""

    title: str
    nodes: list[Node] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, node: Node) -> str:
        """Add `node` once (by id); return its id."""
        if all(n.id != node.id for n in self.nodes):
            self.nodes.append(node)
        return node.id

    def link(self, source: str, target: str, label: str = "") -> None:
        """Add an edge."""
        self.edges.append(Edge(source, target, label))


def _lane_node(index: int, lane: Lane) -> Node:
    role = {"run": "run", "branch": "branch", "child": "child run"}[lane.role]
    label = f"{lane.name}\n{role} · {outcome_word(lane.outcome)}"
    if lane.stalled:
        label += "\n(stalled)"
    if lane.role == "run":
        label += f"\nrun {lane.run_id}"
    kind: NodeKind = "run" if lane.role == "run" else lane.role
    return Node(f"lane{index}", kind, label, lane.outcome)


def run_graph(model: RunModel) -> Graph:
    """The topology run `model` took, with every node's outcome."""
    graph = Graph(f"run {model.run_id} ({model.status})")
    ids: dict[str, str] = {}
    for index, lane in enumerate(model.lanes):
        ids[lane.run_id] = graph.add(_lane_node(index, lane))
    for index, lane in enumerate(model.lanes):
        here = ids[lane.run_id]
        view = lane.view
        agents: dict[str, str] = {}
        for agent in view.agents:
            if agent == lane.name:
                agents[agent] = here  # the branch is that agent
                continue
            chats = sum(1 for s in view.spans if s.agent == agent and s.kind == "model")
            agents[agent] = graph.add(
                Node(
                    f"lane{index}_agent_{agent}",
                    "agent",
                    f"agent {agent}\n{chats} model call{'s' * (chats != 1)}",
                )
            )
            graph.link(here, agents[agent], "runs")
        for tool, calls in view.tools.items():
            failed = sum(1 for s in calls if s.outcome in TROUBLE)
            retried = sum(1 for s in calls if len(s.attempts) > 1)
            label = f"tool {tool}\n{len(calls)} call{'s' * (len(calls) != 1)}"
            label += f", {retried} retried" if retried else ""
            label += f", {failed} {outcome_word('failed')}" if failed else ""
            worst = next((s.outcome for s in calls if s.outcome in TROUBLE), "completed")
            node = graph.add(Node(f"lane{index}_tool_{tool}", "tool", label, worst))
            owner = next((s.agent for s in calls if s.agent), None)
            graph.link(agents.get(owner or "", here), node, "calls")
        for fan in view.fan_outs:
            deadline = (
                f", deadline {seconds(fan.deadline_at - fan.started_at)}"
                if fan.deadline_at is not None
                else ""
            )
            verdict = {"partial": "PARTIAL", "complete": "complete"}.get(fan.status, fan.status)
            fan_id = graph.add(
                Node(
                    f"lane{index}_fan{fan.op}",
                    "fanout",
                    f"fan-out {fan.name}\npolicy {fan.policy}{deadline}\n{verdict}",
                    "completed" if fan.status == "complete" else fan.status,
                )
            )
            graph.link(here, fan_id)
            for branch in fan.branches.values():
                target = ids.get(branch.run_id)
                if target is not None:
                    graph.link(fan_id, target, outcome_word(branch.status))
            if fan.decision:
                decision = graph.add(
                    Node(f"lane{index}_decision{fan.op}", "decision", f"decision: {fan.decision}")
                )
                graph.link(fan_id, decision, "decided")
        branch_runs = {b.run_id for fan in view.fan_outs for b in fan.branches.values()}
        for child in model.lanes:
            if child.parent == lane.run_id and child.run_id not in branch_runs:
                graph.link(here, ids[child.run_id], "child run")
        for span in view.spans:
            if span.kind in ("op", "compensation"):
                node = graph.add(
                    Node(
                        f"lane{index}_op{span.op}_{len(graph.nodes)}",
                        "op",
                        f"{span.name}\n{outcome_word(span.outcome)}",
                        span.outcome,
                    )
                )
                graph.link(here, node)
        for mark in view.marks:
            if mark.kind in ("takeover", "dead_letter", "disagreement"):
                node = graph.add(
                    Node(f"lane{index}_mark{len(graph.nodes)}", "note", mark.label, None)
                )
                graph.link(here, node)
    return graph


# -- writers ----------------------------------------------------------------------------

_DOT_SHAPE = {
    "run": "box",
    "branch": "box",
    "child": "box",
    "agent": "box",
    "tool": "ellipse",
    "fanout": "hexagon",
    "decision": "note",
    "op": "component",
    "model": "cylinder",
    "note": "note",
}
_DOT_FILL = {
    "run": "#dbe8f6",
    "branch": "#e8f1fb",
    "child": "#e8f1fb",
    "agent": "#eef3e2",
    "tool": "#fbe3cc",
    "fanout": "#d3efe8",
    "decision": "#fff6c8",
    "op": "#eef0dc",
    "model": "#eeeeee",
    "note": "#fff6c8",
}


def _ids(graph: Graph) -> dict[str, str]:
    """Node ids as both languages accept them (any agent or tool name is safe)."""
    return {node.id: f"n{index}" for index, node in enumerate(graph.nodes)}


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(graph: Graph) -> str:
    """The graph as Graphviz DOT source (deterministic: same graph, same text)."""
    lines = [
        "digraph phalanx {",
        f'  label="{_dot_text(graph.title)}"; labelloc=t; fontname="DejaVu Sans";',
        "  rankdir=TB; nodesep=0.35; ranksep=0.5;",
        '  node [fontname="DejaVu Sans", fontsize=11, style="filled,rounded"];',
        '  edge [fontname="DejaVu Sans", fontsize=10, color="#555555"];',
    ]
    ids = _ids(graph)
    for node in graph.nodes:
        style = "filled,rounded,dashed,bold" if node.trouble else "filled,rounded"
        fill = "#f8d7da" if node.trouble else _DOT_FILL[node.kind]
        colour = "#b00020" if node.trouble else "#444444"
        lines.append(
            f'  {ids[node.id]} [label="{_dot_text(node.label)}", shape={_DOT_SHAPE[node.kind]}, '
            f'style="{style}", fillcolor="{fill}", color="{colour}"];'
        )
    for edge in graph.edges:
        label = f' [label="{_dot_text(edge.label)}"]' if edge.label else ""
        lines.append(f"  {ids[edge.source]} -> {ids[edge.target]}{label};")
    for index, note in enumerate(graph.notes):
        lines.append(
            f'  note{index} [label="{_dot_text(note)}", shape=note, style=filled, '
            'fillcolor="#ffffff", color="#888888"];'
        )
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    safe = text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")
    return safe.replace("\n", "<br/>")


_MERMAID_OPEN = {
    "tool": ("([", "])"),
    "fanout": ("{{", "}}"),
    "decision": (">", "]"),
    "note": (">", "]"),
    "model": ("[(", ")]"),
}


def to_mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart (renders on GitHub and in most docs tools)."""
    lines = [f"%% {graph.title}", "flowchart TD"]
    ids = _ids(graph)
    for node in graph.nodes:
        left, right = _MERMAID_OPEN.get(node.kind, ("[", "]"))
        lines.append(f'  {ids[node.id]}{left}"{_mermaid_text(node.label)}"{right}')
    for edge in graph.edges:
        label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
        lines.append(f"  {ids[edge.source]} -->{label} {ids[edge.target]}")
    for index, note in enumerate(graph.notes):
        lines.append(f'  note{index}>"{_mermaid_text(note)}"]')
    trouble = [ids[n.id] for n in graph.nodes if n.trouble]
    lines.append(
        "  classDef trouble fill:#f8d7da,stroke:#b00020,stroke-width:2px,stroke-dasharray:5 3"
    )
    if trouble:
        lines.append(f"  class {','.join(trouble)} trouble")
    return "\n".join(lines) + "\n"
