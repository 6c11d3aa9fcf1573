"""`phalanx trace`: a recorded run's span tree, read from the journal alone."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text
from rich.tree import Tree

from ..observe import TraceNode, trace_run
from ._app import JsonOption, StoreOption, _execute, app

# Tree guides need a real console; no markup, so names and errors print verbatim.
out = Console(highlight=False, markup=False, emoji=False)

_STYLE = {
    "completed": "green",
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "waiting": "cyan",
}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "..."
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _details(node: TraceNode) -> str:
    a = node.attributes
    parts: list[str] = []
    if node.kind == "run":
        parts.append(str(a.get("phalanx.run.id")))
        if a.get("phalanx.run.runners", 1) > 1:
            parts.append(f"{a['phalanx.run.runners']} runners (resumed)")
        if a.get("error.type"):
            parts.append(f"{a['error.type']}: {a.get('error.message', '')}")
    elif node.kind == "step":
        if a.get("phalanx.step.attempts", 1) > 1:
            parts.append(f"{a['phalanx.step.attempts']} attempts")
        parts.extend(a.get("phalanx.step.errors", [])[-1:])
    elif node.kind == "invoke_agent":
        parts.append(_count(a.get("phalanx.agent.turns", 0), "turn"))
        parts.append(_count(a.get("phalanx.agent.tool_calls", 0), "tool call"))
    elif node.kind == "chat":
        reasons = [r for r in a.get("gen_ai.response.finish_reasons", []) if r]
        if reasons:
            parts.append(f"finish {','.join(reasons)}")
        if a.get("gen_ai.response.time_to_first_chunk") is not None:
            parts.append(f"ttft {_duration(float(a['gen_ai.response.time_to_first_chunk']))}")
        if a.get("phalanx.step.attempts", 1) > 1:
            parts.append(f"{a['phalanx.step.attempts']} attempts")
    elif node.kind == "execute_tool":
        if a.get("phalanx.step.attempts", 1) > 1:
            parts.append(f"{a['phalanx.step.attempts']} attempts")
        parts.extend(a.get("phalanx.step.errors", [])[-1:])
    elif node.kind == "fanout":
        parts.append(str(a.get("phalanx.fanout.policy")))
        if a.get("phalanx.fanout.partial"):
            parts.append("PARTIAL")
    elif node.kind == "branch":
        if a.get("phalanx.branch.stalled"):
            parts.append("stalled")
        if a.get("phalanx.branch.error"):
            parts.append(str(a["phalanx.branch.error"]))
    elif node.kind == "decision" and a.get("phalanx.decision.reason"):
        parts.append(str(a["phalanx.decision.reason"]))
    return "  ".join(parts)


def _label(node: TraceNode) -> Text:
    label = Text.assemble(
        (node.name, "bold" if node.kind in ("run", "invoke_agent", "fanout") else ""),
        "  ",
        (node.status, _STYLE.get(node.status, "white")),
        "  ",
        _duration(node.duration_s),
    )
    tokens_in, tokens_out = node.tokens()
    if tokens_in or tokens_out:
        label.append(f"  tokens {tokens_in} in / {tokens_out} out", style="dim")
    details = _details(node)
    if details:
        label.append(f"  {details}", style="dim")
    return label


def _render(node: TraceNode, tree: Tree) -> None:
    for child in node.children:
        _render(child, tree.add(_label(child)))


@app.command()
def trace(
    run_id: Annotated[str, typer.Argument(help="The run whose span tree to print.")],
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a run's span tree from its journal: steps, agents, tools, fan-outs, children."""
    root = _execute(store, 15.0, lambda rt: trace_run(rt, run_id))
    trace_id = root.attributes.get("trace_id")
    if as_json:
        print(
            json.dumps(
                {"run_id": run_id, "trace_id": trace_id, "root": root.to_json()},
                ensure_ascii=False,
            )
        )
        return
    tree = Tree(_label(root))
    _render(root, tree)
    out.print(tree)
    if trace_id:
        out.print(f"trace id {trace_id} (find it in any OTLP backend the run exported to)")
