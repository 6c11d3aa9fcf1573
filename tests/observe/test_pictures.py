"""The run model and the pictures drawn from it: timeline SVG/PNG/HTML, DOT, Mermaid.

Every test reads a real journal on both stores: the research demo's recorded run
(docs/pictures/research-run.jsonl, written back with its original times and epochs)
or runs these tests start.
"""

from __future__ import annotations

import json
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import phalanx
from phalanx.observe import (
    build_run_model,
    diagram_bytes,
    narrate,
    render_timeline_svg,
    run_graph,
    timeline_bytes,
    timeline_html,
    to_dot,
    to_mermaid,
)
from phalanx.testing import load_recorded, read_recorded

from . import pictureflows, workflows

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "docs" / "pictures" / "research-run.jsonl"
RUN = "research-demo"
BRANCHES = {"vector_db": "succeeded", "web_search": "timed_out", "synthesis": "succeeded"}


async def recorded_model(url: str) -> phalanx.observe.RunModel:
    await load_recorded(url, read_recorded(RECORDED))
    async with phalanx.open_runtime(url) as runtime:
        return await build_run_model(runtime, RUN)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_model_of_the_research_run_names_every_branch_with_its_outcome(url: str) -> None:
    """Lanes: the run, then each branch by name with the outcome its fan-out recorded."""
    model = await recorded_model(url)
    assert model.lanes[0].name == "research"
    assert model.outcomes() == BRANCHES
    web = next(lane for lane in model.lanes if lane.name == "web_search")
    assert web.role == "branch" and web.stalled and web.view.status == "cancelled"
    hung = [s for s in web.view.spans if s.kind == "model"]
    assert len(hung) == 1 and hung[0].cut_off and hung[0].outcome == "cancelled"
    ((fan_lane, fan),) = model.fan_outs
    assert fan_lane.depth == 0 and fan.policy == "all" and fan.status == "partial"
    assert fan.decision is not None and "degrade visibly" in fan.decision
    kinds = {m.kind for m in model.root.marks}
    assert {"stall", "deadline", "decision"} <= kinds


async def test_story_says_which_branch_hung_when_the_deadline_hit_and_what_was_decided(
    url: str,
) -> None:
    """The caption names the stalled branch, the deadline and the decision in words."""
    story = "\n".join(narrate(await recorded_model(url)))
    assert "web_search went silent (stalled), then ✗ timed_out after 4.0s" in story
    assert "policy all, deadline 4.0s" in story
    assert "Decision: degrade visibly" in story
    assert "Run completed with a PARTIAL answer" in story


async def test_timeline_svg_is_well_formed_and_holds_every_name_and_outcome(url: str) -> None:
    """The SVG parses, names every branch with its outcome, hatches and labels trouble."""
    svg = render_timeline_svg(await recorded_model(url))
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for branch, outcome in BRANCHES.items():
        assert branch in text and outcome in text
    assert "✗ timed_out" in text  # not colour alone: a word and a cross
    assert "DEADLINE +4.0s" in text
    assert 'fill="url(#hatch)"' in svg
    assert "never answered" in text


async def test_timeline_png_and_html(url: str, tmp_path: Path) -> None:
    """PNG is a real image at 1.5x the SVG's width; HTML embeds the SVG and the story."""
    model = await recorded_model(url)
    png = timeline_bytes(model, tmp_path / "t.png")
    width, height = png_size(png)
    assert width == 1800 and height > 400
    html = timeline_bytes(model, tmp_path / "t.HTML").decode()
    assert html == timeline_html(model)
    assert "<svg" in html and "web_search" in html and "What happened" in html


async def test_dot_and_mermaid_hold_the_topology_with_outcomes(url: str) -> None:
    """Golden structure: run → fan-out → each branch, labelled edges, tools, decision."""
    graph = run_graph(await recorded_model(url))
    labels = {n.id: n.label for n in graph.nodes}
    by_label = {label.split("\n")[0]: node_id for node_id, label in labels.items()}
    for branch, outcome in BRANCHES.items():
        assert outcome in labels[by_label[branch]]
    fan = by_label["fan-out research"]
    edges = {(e.source, e.target): e.label for e in graph.edges}
    assert edges[(by_label["research"], fan)] == ""
    for branch, outcome in BRANCHES.items():
        assert outcome in edges[(fan, by_label[branch])]
    assert (by_label["vector_db"], by_label["tool search_vectors"]) in edges
    assert any(label.startswith("decision: degrade visibly") for label in labels.values())
    trouble = [n for n in graph.nodes if n.trouble]
    assert [n.label.split("\n")[0] for n in trouble] == ["web_search"]

    dot = to_dot(graph)
    assert dot.startswith("digraph phalanx {") and dot.rstrip().endswith("}")
    assert dot.count(" -> ") == len(graph.edges)
    assert "web_search\\nbranch · ✗ timed_out" in dot and "dashed,bold" in dot
    mermaid = to_mermaid(graph)
    assert mermaid.splitlines()[1] == "flowchart TD"
    assert mermaid.count(" -->") == len(graph.edges)
    assert "web_search<br/>branch · ✗ timed_out" in mermaid
    trouble_line = next(line for line in mermaid.splitlines() if line.startswith("  class "))
    assert trouble_line.split()[1].count(",") == 0  # one node in trouble


async def test_diagram_files_svg_png_dot_mmd(url: str, tmp_path: Path) -> None:
    """Graphviz lays the DOT out as SVG (every branch and outcome in it) and PNG."""
    graph = run_graph(await recorded_model(url))
    svg = diagram_bytes(graph, tmp_path / "d.svg").decode()
    ET.fromstring(svg.encode())
    for branch, outcome in BRANCHES.items():
        assert branch in svg and outcome in svg
    width, height = png_size(diagram_bytes(graph, tmp_path / "d.png"))
    assert width > 300 and height > 200
    assert diagram_bytes(graph, tmp_path / "d.dot").decode() == to_dot(graph)
    assert diagram_bytes(graph, tmp_path / "d.mmd").decode() == to_mermaid(graph)


async def test_retries_children_compensations_and_unknown_operations_are_drawn(
    runtime: phalanx.Runtime, tmp_path: Path
) -> None:
    """A retried step shows both attempts; a child run gets a lane; nothing is dropped."""
    outcome = await runtime.run(pictureflows.patterned, {"key": str(tmp_path)}, run_id="pat-1")
    assert outcome.status == "completed"
    model = await build_run_model(runtime, "pat-1")
    assert [(lane.name, lane.role, lane.outcome) for lane in model.lanes] == [
        ("patterned", "run", "completed"),
        ("little", "child", "completed"),
    ]
    spans = {s.name: s for s in model.root.spans}
    fetch = spans["fetch"]
    assert [a.outcome for a in fetch.attempts] == ["failed", "completed"]
    assert fetch.outcome == "completed" and "2 attempts" in fetch.detail
    assert spans["compensate draft"].outcome == "compensated"
    assert spans["compensate outline"].outcome == "compensated"
    mystery = spans["consensus_round round-1"]
    assert mystery.kind == "op" and [t for _, t in mystery.ticks] == [
        "ProposalMade",
        "ProposalAccepted",
    ]
    assert any(m.kind == "disagreement" for m in model.root.marks)
    svg = render_timeline_svg(model)
    for word in ("compensate draft", "consensus_round round-1", "little", "fetch"):
        assert word in svg
    mermaid = to_mermaid(run_graph(model))
    assert "consensus_round round-1" in mermaid and "child run" in mermaid


async def test_dead_letters_and_failed_branches_are_marked(runtime: phalanx.Runtime) -> None:
    """A dead-lettered tool call is a mark; a failed branch is trouble in every picture."""
    await runtime.run(workflows.dead_letters, {}, run_id="dl-1")
    model = await build_run_model(runtime, "dl-1")
    marks = [m for m in model.root.marks if m.kind == "dead_letter"]
    assert len(marks) == 1 and "always_down dead-lettered" in marks[0].label
    assert "dead-lettered" in render_timeline_svg(model)

    await runtime.run(workflows.fan_out, {}, run_id="fo-1")
    model = await build_run_model(runtime, "fo-1")
    assert model.outcomes() == {"good": "succeeded", "bad": "failed"}
    graph = run_graph(model)
    assert [n.label.split("\n")[0] for n in graph.nodes if n.trouble] == ["bad"]
    story = "\n".join(narrate(model))
    assert "bad: broken ✗ failed at +" in story and "no source for fencing" in story
    svg = render_timeline_svg(model)
    assert "DEADLINE +" not in svg  # a 30 s deadline the run never reached is not drawn


async def test_a_lease_takeover_is_a_mark_on_the_run(url: str) -> None:
    """Events written under a higher epoch than the ones before show a takeover."""
    events = read_recorded(RECORDED)
    root = [e for e in events if e["stream_id"] == f"run:{RUN}"]
    for event in root[len(root) // 2 :]:
        event["epoch"] = 2
    await load_recorded(url, events)
    async with phalanx.open_runtime(url) as runtime:
        model = await build_run_model(runtime, RUN)
    takeovers = [m for m in model.root.marks if m.kind == "takeover"]
    assert [m.label for m in takeovers] == ["lease taken over: runner epoch 1 → 2"]
    assert model.root.epochs == [1, 2]
    assert "lease taken over" in " ".join(narrate(model))


async def test_model_json_summarises_lanes_and_fan_outs(url: str) -> None:
    """`RunModel.to_json`: lanes with outcomes, agents and tools; fan-outs with decisions."""
    summary = json.loads(json.dumps((await recorded_model(url)).to_json()))
    lanes = {lane["name"]: lane for lane in summary["lanes"]}
    assert lanes["web_search"]["outcome"] == "timed_out"
    assert lanes["vector_db"]["tools"] == ["search_vectors"]
    assert lanes["research"]["agents"] == ["orchestrator"]
    (fan,) = summary["fan_outs"]
    assert fan["branches"] == BRANCHES and fan["status"] == "partial"


async def test_view_cache_reads_only_what_was_appended_since(runtime: phalanx.Runtime) -> None:
    """A cached view is reused while the run is unchanged and updated when it grows."""
    from phalanx.durable.lowlevel import run_stream
    from phalanx.journal import NewEvent
    from phalanx.observe import ViewCache

    await runtime.run(workflows.fan_out, {}, run_id="vc-1")
    cache = ViewCache(size=1)
    first = await cache.view(runtime, "vc-1")
    assert await cache.view(runtime, "vc-1") is first
    stream = run_stream("vc-1")
    version = await runtime.store.stream_version(stream)
    lease = await runtime.store.get_lease(stream)
    await runtime.store.append(
        stream,
        [NewEvent("OperatorNote", {"text": "looked at it"})],
        expected_version=version,
        epoch=None if lease is None else lease.epoch,
    )
    updated = await cache.view(runtime, "vc-1")
    assert updated is not first and updated.event_count == first.event_count + 1
    assert [m.label for m in updated.marks if m.kind == "event"] == ["OperatorNote"]
    model = await build_run_model(runtime, "vc-1", deep=False, cache=cache)
    assert model.outcomes() == {"good": "succeeded", "bad": "failed"}
    assert all(not lane.view.spans for lane in model.lanes[1:])  # children not read


async def test_budget_summaries_and_rejected_payloads_are_marks(runtime: phalanx.Runtime) -> None:
    """The budget demo's summarisation, budget action and rejected payload are drawn and told."""
    from phalanx.demo import budget_demo

    outcome = await runtime.run(budget_demo, {}, run_id="budget-1")
    assert outcome.status == "completed"
    model = await build_run_model(runtime, "budget-1")
    labels = [m.label for lane in model.lanes for m in lane.view.marks if m.kind == "budget"]
    assert any("context summarised" in label for label in labels)
    assert any("budget action summarize" in label for label in labels)
    assert any("rejected" in label for label in labels)
    assert "Σ" in render_timeline_svg(model)
    assert any("context summarised" in line for line in narrate(model))
