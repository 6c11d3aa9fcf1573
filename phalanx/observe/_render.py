"""Pictures to files: the format follows the file's extension.

A timeline is SVG drawn by `_timeline.py`; PNG is that SVG rasterised by CairoSVG,
and HTML is a page holding it with the run's story. A diagram is DOT laid out by
Graphviz (`dot`, Debian's `graphviz` package, through the `graphviz` binding) for SVG
and PNG, or written as text (`.dot`, Mermaid `.mmd`). No browser is needed for any
of it. The renderers are optional extras (`phalanx[pictures]`); a missing one is a
`ConfigError` that says what to install, raised before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from .._errors import ConfigError, PictureFormatError
from ._graph import Graph, to_dot, to_mermaid
from ._model import RunModel
from ._story import narrate
from ._timeline import render_timeline_svg

TIMELINE_FORMATS = (".svg", ".png", ".html")
DIAGRAM_FORMATS = (".svg", ".png", ".mmd", ".dot")
#: Timeline PNGs are drawn at this scale of the SVG's 1200-pixel width (sharp on screens).
PNG_SCALE = 1.5


def _suffix(path: Path, picture: str, formats: tuple[str, ...]) -> str:
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise PictureFormatError(path=str(path), picture=picture, formats=list(formats))
    return suffix


def svg_to_png(svg: str, *, scale: float = PNG_SCALE) -> bytes:
    """Rasterise an SVG document with CairoSVG.

    Raises:
        ConfigError: CairoSVG (or the cairo library it loads) is not installed.
    """
    try:
        import cairosvg  # type: ignore[import-untyped]  # no type hints shipped
    except (ImportError, OSError) as exc:
        raise ConfigError(
            setting="PNG renderer",
            reason=f"CairoSVG is not usable ({exc}); install phalanx[pictures] and Debian's "
            "libcairo2 (scripts/setup does), or write .svg instead",
        ) from exc
    png = cairosvg.svg2png(bytestring=svg.encode("utf-8"), scale=scale)
    return bytes(png)


def dot_to(dot: str, fmt: str) -> bytes:
    """Lay out DOT source with Graphviz and return it as `fmt` (`svg`, `png`).

    Raises:
        ConfigError: the `graphviz` binding or the `dot` program is missing.
    """
    try:
        import graphviz  # type: ignore[import-untyped]  # ships no type hints
    except ImportError as exc:
        raise ConfigError(
            setting="diagram renderer",
            reason="the graphviz Python package is not installed: install phalanx[pictures], "
            "or write .dot or .mmd instead",
        ) from exc
    try:
        return bytes(graphviz.Source(dot).pipe(format=fmt))
    except graphviz.ExecutableNotFound as exc:
        raise ConfigError(
            setting="diagram renderer",
            reason="Graphviz's `dot` program is not on PATH: install Debian's graphviz "
            "package (scripts/setup does), or write .dot or .mmd instead",
        ) from exc


def timeline_html(model: RunModel) -> str:
    """A standalone page: the timeline SVG and the run told in sentences."""
    story = "\n".join(f"<li>{escape(line.strip())}</li>" for line in narrate(model))
    title = escape(f"timeline of run {model.run_id}")
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{title}</title></head>\n<body style="font-family: sans-serif">\n'
        f"<h1>{title}</h1>\n{render_timeline_svg(model)}\n"
        f"<h2>What happened</h2>\n<ul>\n{story}\n</ul>\n</body></html>\n"
    )


def timeline_bytes(model: RunModel, path: Path) -> bytes:
    """The timeline in the format `path`'s extension names.

    Raises:
        PictureFormatError: not .svg, .png or .html.
        ConfigError: PNG asked for and CairoSVG is missing.
    """
    suffix = _suffix(path, "timeline", TIMELINE_FORMATS)
    if suffix == ".html":
        return timeline_html(model).encode("utf-8")
    svg = render_timeline_svg(model)
    return svg.encode("utf-8") if suffix == ".svg" else svg_to_png(svg)


def diagram_bytes(graph: Graph, path: Path) -> bytes:
    """The diagram in the format `path`'s extension names.

    Raises:
        PictureFormatError: not .svg, .png, .mmd or .dot.
        ConfigError: SVG or PNG asked for and Graphviz is missing.
    """
    suffix = _suffix(path, "diagram", DIAGRAM_FORMATS)
    if suffix == ".mmd":
        return to_mermaid(graph).encode("utf-8")
    dot = to_dot(graph)
    if suffix == ".dot":
        return dot.encode("utf-8")
    return dot_to(dot, suffix[1:])
