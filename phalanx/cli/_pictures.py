"""`phalanx timeline` and `phalanx diagram`: a recorded run (or declared code) as a picture.

Both read the journal alone, through the one run model in `phalanx.observe`, and
write the format the output file's extension names. `diagram` also takes
`MODULE:OBJECT` to draw an agent system from code without running it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .._errors import PictureFormatError, UnknownRunError
from ..durable import Runtime
from ..observe import (
    DIAGRAM_FORMATS,
    TIMELINE_FORMATS,
    build_run_model,
    declared_graph,
    diagram_bytes,
    run_graph,
    timeline_bytes,
)
from ._app import StoreOption, _execute, _fail, app, err

OutputOption = Annotated[
    Path,
    typer.Option(
        "--output", "-o", metavar="FILE", help="Where to write; the extension picks the format."
    ),
]


def _check_format(path: Path, picture: str, formats: tuple[str, ...]) -> None:
    """Refuse an unknown extension before reading the store (exit 2)."""
    if path.suffix.lower() not in formats:
        raise _fail(
            str(PictureFormatError(path=str(path), picture=picture, formats=list(formats))), 2
        )


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror or exc}", 1) from exc
    err.print(f"wrote {path} ({len(data)} bytes)")


@app.command()
def timeline(
    run_id: Annotated[str, typer.Argument(help="The run to draw.")],
    output: OutputOption,
    store: StoreOption = None,
) -> None:
    """Draw a run's timeline (.svg, .png or .html): one lane per agent, branch and child run."""

    async def body(runtime: Runtime) -> bytes:
        return timeline_bytes(await build_run_model(runtime, run_id), output)

    _check_format(output, "timeline", TIMELINE_FORMATS)
    _write(output, _execute(store, 15.0, body))


@app.command()
def diagram(
    target: Annotated[
        str, typer.Argument(metavar="RUN|MODULE:OBJECT", help="A run id, or code to draw.")
    ],
    output: OutputOption,
    store: StoreOption = None,
) -> None:
    """Draw the topology a run took (.svg, .png, .mmd or .dot), or one declared in code."""

    async def body(runtime: Runtime) -> bytes:
        try:
            model = await build_run_model(runtime, target)
        except UnknownRunError:
            if ":" not in target:
                raise
            return diagram_bytes(declared_graph(target), output)
        return diagram_bytes(run_graph(model), output)

    _check_format(output, "diagram", DIAGRAM_FORMATS)
    _write(output, _execute(store, 15.0, body))
