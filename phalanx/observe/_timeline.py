"""A run's timeline as SVG, drawn directly from the run model (it is a Gantt chart).

One lane per run (the run, each fan-out branch, each child run), on one time axis in
seconds from the run's start. Bars are model calls, tool calls (each retry its own
segment), steps, waits and pattern operations; a dashed line is a deadline; a
triangle a stall; a diamond a decision. Failed, timed-out and cancelled work is
hatched *and* labelled in words, so a black-and-white print still says it. Under the
chart, the run told in sentences (`_story.narrate`), from the same model.

Output is deterministic for a given journal (no clock, no random ids), which is what
lets the README's pictures be checked for staleness.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from ._model import Lane, RunModel
from ._runview import TROUBLE, Mark, Span
from ._story import narrate, outcome_word, seconds

WIDTH = 1200
LABEL_W = 270
RIGHT_PAD = 40
ROW_H = 22
LANE_PAD = 30
HEADER_H = 86
CHAR_W = 6.4  # average width of an 11px sans-serif glyph, for fitting labels

FILL = {
    "model": "#7aa6d8",
    "tool": "#f0a35e",
    "step": "#b8b8b8",
    "sleep": "#d9c7ef",
    "wait": "#c7b3e6",
    "fanout": "#8fd0c0",
    "compensation": "#d2a679",
    "op": "#c9d6a3",
}
KIND_LABEL = {
    "model": "model call",
    "tool": "tool call",
    "step": "step",
    "sleep": "timer",
    "wait": "wait for signal",
    "fanout": "fan-out",
    "compensation": "compensation",
    "op": "pattern operation",
}
MARK_GLYPH = {
    "stall": "▲",
    "late": "↩",
    "decision": "◆",
    "dead_letter": "✕",
    "takeover": "⇄",
    "disagreement": "≠",
    "interrupted": "‖",
    "budget": "Σ",
    "event": "•",
}


def _f(value: float) -> str:
    return f"{value:.1f}"


def _text(x: float, y: float, body: str, *, size: int = 11, extra: str = "") -> str:
    return f'<text x="{_f(x)}" y="{_f(y)}" font-size="{size}" {extra}>{escape(body)}</text>'


def _fits(label: str, width: float) -> bool:
    return len(label) * CHAR_W + 6 <= width


@dataclass
class _Axis:
    origin: float
    span_s: float

    def x(self, at: float) -> float:
        usable = WIDTH - LABEL_W - RIGHT_PAD
        return LABEL_W + (at - self.origin) / self.span_s * usable

    def ticks(self) -> list[float]:
        step = _nice_step(self.span_s / 8)
        count = int(self.span_s / step) + 1
        return [i * step for i in range(count + 1) if i * step <= self.span_s * 1.0001]


def _nice_step(raw: float) -> float:
    for unit in (0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0, 3600.0):
        for mult in (1, 2, 5):
            if unit * mult >= raw:
                return unit * mult
    return 3600.0 * 24


def _rows(spans: list[Span]) -> list[list[Span]]:
    """Spans packed into rows so that none overlaps another (greedy, by start)."""
    rows: list[list[Span]] = []
    ends: list[float] = []
    for span in sorted(spans, key=lambda s: (s.start, s.op or 0)):
        end = span.end if span.end is not None else span.start
        for index, row_end in enumerate(ends):
            if span.start >= row_end:
                rows[index].append(span)
                ends[index] = max(end, span.start + 1e-9)
                break
        else:
            rows.append([span])
            ends.append(max(end, span.start + 1e-9))
    return rows or [[]]


def _span_label(span: Span, lane: Lane) -> str:
    who = f"{span.agent}: " if span.agent and span.agent != lane.name else ""
    label = f"{who}{span.name}"
    if span.cut_off:
        label += f" — never answered, {outcome_word(span.outcome)}"
    elif span.outcome in TROUBLE:
        label += f" — {outcome_word(span.outcome)}"
    elif span.outcome == "retrying":
        label += " — retried"
    return label


def _draw_span(
    out: list[str], span: Span, lane: Lane, axis: _Axis, y: float, end: float, room: float
) -> None:
    """Draw one bar; a label that does not fit inside goes right of it if `room` allows."""
    x0 = axis.x(span.start)
    x1 = max(axis.x(span.end if span.end is not None else end), x0 + 3)
    tip = f"{_span_label(span, lane)} ({span.kind}, {span.outcome}"
    if span.duration_s is not None:
        tip += f", {seconds(span.duration_s)}"
    tip += f"){'; ' + span.detail if span.detail else ''}"
    out.append(f'<g class="span {span.kind} {span.outcome}"><title>{escape(tip)}</title>')
    pieces = span.attempts if len(span.attempts) > 1 else []
    if pieces:
        for attempt in pieces:
            a0 = axis.x(attempt.start)
            a1 = max(axis.x(attempt.end if attempt.end is not None else end), a0 + 2)
            _bar(out, a0, a1, y, FILL[span.kind], attempt.outcome)
    else:
        _bar(out, x0, x1, y, FILL[span.kind], span.outcome)
    label = _span_label(span, lane)
    if _fits(label, x1 - x0):
        out.append(_text(x0 + 3, y + 15, label))
    elif (span.outcome in TROUBLE or span.kind in ("fanout", "op", "compensation")) and (
        x1 + 4 + len(label) * CHAR_W <= room
    ):
        out.append(_text(x1 + 4, y + 15, label, extra='font-weight="bold"'))
    for at, _type in span.ticks:
        tx = axis.x(at)
        out.append(
            f'<line x1="{_f(tx)}" y1="{_f(y + 2)}" x2="{_f(tx)}" y2="{_f(y + 18)}" '
            'stroke="#333" stroke-width="1"/>'
        )
    out.append("</g>")


def _bar(out: list[str], x0: float, x1: float, y: float, fill: str, outcome: str) -> None:
    trouble = outcome in TROUBLE
    dash = ' stroke-dasharray="4 2"' if trouble else ""
    out.append(
        f'<rect x="{_f(x0)}" y="{_f(y + 2)}" width="{_f(x1 - x0)}" height="{ROW_H - 4}" '
        f'fill="{fill}" stroke="{"#b00020" if trouble else "#555"}" '
        f'stroke-width="{1.5 if trouble else 0.6}"{dash} rx="2"/>'
    )
    if trouble:
        out.append(
            f'<rect x="{_f(x0)}" y="{_f(y + 2)}" width="{_f(x1 - x0)}" height="{ROW_H - 4}" '
            'fill="url(#hatch)" rx="2"/>'
        )


def _draw_mark(
    out: list[str],
    mark: Mark,
    axis: _Axis,
    y: float,
    lane_h: float,
    taken: list[tuple[float, float]],
) -> None:
    """Draw a mark's glyph, and its words where no other mark's words on the lane are.

    `taken` holds the horizontal extents of the words already written on this lane: a
    label that would overlap one is left to the tooltip and the story below the chart.
    """
    if mark.kind == "deadline":
        return  # drawn across the whole chart
    x = axis.x(mark.at)
    glyph = MARK_GLYPH.get(mark.kind, "•")
    out.append(f'<g class="mark {mark.kind}"><title>{escape(mark.label)}</title>')
    out.append(
        _text(x - 5, y + lane_h - 6, glyph, size=13, extra='font-weight="bold" fill="#b00020"')
    )
    short = mark.label if len(mark.label) < 60 else mark.label[:57] + "..."
    width = len(short) * 5.8
    left = x > WIDTH * 0.6  # near the right edge: the words go to the left of the mark
    extent = (x - 8 - width, x - 8) if left else (x + 8, x + 8 + width)
    free = all(extent[1] < a or extent[0] > b for a, b in taken)
    if mark.kind != "event" and free:
        taken.append(extent)
        if left:
            extra = 'fill="#b00020" text-anchor="end"'
            out.append(_text(x - 8, y + lane_h - 6, short, size=10, extra=extra))
        else:
            out.append(_text(x + 8, y + lane_h - 6, short, size=10, extra='fill="#b00020"'))
    out.append("</g>")


def _lane_title(lane: Lane) -> tuple[str, str]:
    role = {"run": "run", "branch": "fan-out branch", "child": "child run"}[lane.role]
    stall = ", stalled" if lane.stalled else ""
    first = f"{'  ' * lane.depth}{lane.name}"
    second = f"{'  ' * lane.depth}{role}: {outcome_word(lane.outcome)}{stall}"
    return first, second


def _header(model: RunModel) -> list[str]:
    root = model.root
    partial = any(fan.partial for _, fan in model.fan_outs)
    status = outcome_word(root.status) + (", PARTIAL answer" if partial else "")
    lines = [
        _text(
            12,
            24,
            f"{model.lanes[0].name} — run {root.run_id}: {status}",
            size=16,
            extra='font-weight="bold"',
        ),
    ]
    facts = [f"{len(model.lanes)} runs", f"{model.event_count} events"]
    if model.root.end is not None and model.root.start is not None:
        facts.append(f"took {seconds(model.root.end - model.root.start)}")
    for _lane, fan in model.fan_outs[:2]:
        deadline = (
            f", deadline {seconds(fan.deadline_at - fan.started_at)}" if fan.deadline_at else ""
        )
        facts.append(f"fan-out {fan.name}: policy {fan.policy}{deadline} → {fan.status}")
    lines.append(_text(12, 44, " · ".join(facts), size=12))
    return lines


def _legend(y: float) -> tuple[list[str], float]:
    out = [_text(12, y + 14, "Legend", size=12, extra='font-weight="bold"')]
    x = 70.0
    for kind, label in KIND_LABEL.items():
        out.append(
            f'<rect x="{_f(x)}" y="{_f(y + 4)}" width="14" height="12" '
            f'fill="{FILL[kind]}" stroke="#555" stroke-width="0.6"/>'
        )
        out.append(_text(x + 18, y + 14, label, size=10))
        x += 18 + len(label) * 6 + 16
    y += 20
    x = 70.0
    out.append(
        f'<rect x="{_f(x)}" y="{_f(y + 4)}" width="14" height="12" fill="#eee" '
        'stroke="#b00020" stroke-dasharray="4 2"/>'
    )
    out.append(f'<rect x="{_f(x)}" y="{_f(y + 4)}" width="14" height="12" fill="url(#hatch)"/>')
    items = [
        "hatched, dashed, ✗: failed / timed_out / cancelled",
        "- - deadline",
        "▲ stall (branch went silent)",
        "◆ decision",
        "✕ dead-lettered",
        "⇄ lease takeover",
        "Σ budget action",
    ]
    x += 18
    for item in items:
        out.append(_text(x, y + 14, item, size=10))
        x += len(item) * 6 + 18
    return out, y + 26


def render_timeline_svg(model: RunModel) -> str:
    """The run model as a standalone SVG document (UTF-8 text)."""
    origin = model.start
    axis = _Axis(origin, max(model.end - origin, 1e-3) * 1.04)
    body: list[str] = []
    marks: list[str] = []  # drawn over every lane's background
    labelled: dict[str, list[tuple[float, float]]] = {lane.run_id: [] for lane in model.lanes}
    chart_top = float(HEADER_H)
    layout: dict[str, tuple[float, float, list[list[Span]]]] = {}
    y = chart_top
    for lane in model.lanes:
        rows = _rows(lane.view.spans)
        layout[lane.run_id] = (y, len(rows) * ROW_H + LANE_PAD, rows)
        y += len(rows) * ROW_H + LANE_PAD
    by_branch: dict[tuple[str | None, str], Lane] = {
        (lane.parent, lane.name): lane for lane in model.lanes
    }
    for index, lane in enumerate(model.lanes):
        y, lane_h, rows = layout[lane.run_id]
        if index % 2 == 0:
            body.append(
                f'<rect x="0" y="{_f(y)}" width="{WIDTH}" height="{_f(lane_h)}" fill="#f6f7f9"/>'
            )
        view = lane.view
        trouble = lane.outcome in TROUBLE
        colour = "#b00020" if trouble else "#333"
        if view.start is not None:
            life0 = axis.x(view.start)
            life1 = axis.x(view.end if view.end is not None else model.end)
            dash = ' stroke-dasharray="6 3"' if trouble else ""
            body.append(
                f'<line x1="{_f(life0)}" y1="{_f(y + 8)}" x2="{_f(life1)}" y2="{_f(y + 8)}" '
                f'stroke="{colour}" stroke-width="3"{dash}/>'
            )
            body.append(
                _text(
                    life1 + 4,
                    y + 12,
                    outcome_word(lane.outcome),
                    size=10,
                    extra=f'font-weight="bold" fill="{colour}"',
                )
            )
        first, second = _lane_title(lane)
        body.append(_text(10, y + 16, first, size=13, extra='font-weight="bold"'))
        weight = ' font-weight="bold"' if trouble else ""
        body.append(_text(10, y + 31, second, size=11, extra=f'fill="{colour}"{weight}'))
        end = view.end if view.end is not None else model.end
        for row_index, row in enumerate(rows):
            row_y = y + 14 + row_index * ROW_H
            for index, span in enumerate(row):
                later = row[index + 1].start if index + 1 < len(row) else None
                room = axis.x(later) - 4 if later is not None else WIDTH - 4
                _draw_span(body, span, lane, axis, row_y, end, room)
        for mark in view.marks:
            target = by_branch.get((lane.run_id, mark.branch or ""), lane)
            target_y, target_h, _ = layout[target.run_id]
            _draw_mark(marks, mark, axis, target_y, target_h, labelled[target.run_id])
    y = chart_top + sum(h for _, h, _ in layout.values())
    chart_bottom = y
    body.append(
        f'<line x1="{LABEL_W}" y1="{_f(chart_top)}" x2="{LABEL_W}" '
        f'y2="{_f(chart_bottom)}" stroke="#999"/>'
    )
    axis_svg = []
    for tick in axis.ticks():
        tx = axis.x(origin + tick)
        axis_svg.append(
            f'<line x1="{_f(tx)}" y1="{_f(chart_top - 6)}" x2="{_f(tx)}" '
            f'y2="{_f(chart_bottom)}" stroke="#ddd"/>'
        )
        axis_svg.append(
            _text(tx - 10, chart_top - 10, f"+{seconds(tick)}", size=10, extra='fill="#555"')
        )
    deadlines = _deadlines(model, axis, chart_top, chart_bottom)
    story_y = chart_bottom + 24
    story = [_text(12, story_y, "What happened", size=13, extra='font-weight="bold"')]
    for line in narrate(model):
        story_y += 17
        indent = 24 if line.startswith("  ") else 12
        story.append(_text(indent, story_y, line.strip(), size=12))
    legend, bottom = _legend(story_y + 16)
    height = bottom + 8
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{_f(height)}" '
            f'viewBox="0 0 {WIDTH} {_f(height)}" font-family="DejaVu Sans, Arial, sans-serif">',
            f"<title>timeline of run {escape(model.run_id)}</title>",
            '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
            'patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#222" '
            'stroke-width="1.6"/></pattern></defs>',
            f'<rect width="{WIDTH}" height="{_f(height)}" fill="white"/>',
            *_header(model),
            *axis_svg,
            *body,
            *marks,
            *deadlines,
            *story,
            *legend,
            "</svg>",
            "",
        ]
    )


def _deadlines(model: RunModel, axis: _Axis, top: float, bottom: float) -> list[str]:
    out: list[str] = []
    for lane in model.lanes:
        for mark in lane.view.marks:
            if mark.kind != "deadline" or mark.at > axis.origin + axis.span_s:
                continue  # a deadline the run never reached is in the header, not drawn
            x = axis.x(mark.at)
            at = seconds(mark.at - model.start)
            out.append(f'<g class="mark deadline"><title>{escape(mark.label)}</title>')
            out.append(
                f'<line x1="{_f(x)}" y1="{_f(top - 4)}" x2="{_f(x)}" y2="{_f(bottom)}" '
                'stroke="#b00020" stroke-width="2" stroke-dasharray="6 4"/>'
            )
            out.append(
                _text(
                    x + 4,
                    top - 24,
                    f"DEADLINE +{at}",
                    size=11,
                    extra='font-weight="bold" fill="#b00020"',
                )
            )
            out.append("</g>")
    return out
