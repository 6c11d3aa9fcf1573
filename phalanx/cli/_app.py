"""The `phalanx` command: run, resume, inspect and steer durable runs.

Exit status: 0 the operation succeeded (a run completed), 1 it did not (a run failed,
was cancelled, diverged from its journal, or this runner was fenced out), 2 a usage or
configuration error (unknown run, unimportable workflow, bad --input, store that
cannot be opened). Results and `--json` output go to stdout; diagnostics to stderr.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
import typer.main
from rich.console import Console
from rich.text import Text

from .._errors import (
    ConfigError,
    FencedError,
    LeaseLostError,
    NonDeterminismError,
    PhalanxError,
    RunExistsError,
    StoreCorruptError,
    StoreUnavailableError,
    UserError,
)
from ..durable import (
    RunOutcome,
    Runtime,
    check_inputs,
    load_workflow,
    open_runtime,
)
from ..durable.lowlevel import run_stream
from ..observe import configure_from_env

T = TypeVar("T")

app = typer.Typer(
    name="phalanx",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup or emoji codes: run ids, paths, errors and results are printed verbatim
# (a "[/x]" in a message would otherwise be eaten, or crash the print).
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="PHALANX_STORE",
        metavar="URL",
        help="Store URL (default ./.phalanx/phalanx.db): sqlite:///rel/path.db is relative "
        "to the current directory, sqlite:////abs/path.db (four slashes) absolute, as in "
        "SQLAlchemy; or postgresql://user@host/db; or memory:// (in-memory, NOT durable: "
        "gone when the command exits).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
LeaseOption = Annotated[
    float,
    typer.Option(
        "--lease-ttl",
        envvar="PHALANX_LEASE_TTL",
        metavar="SECONDS",
        help="Lease time-to-live, seconds.",
    ),
]


def _fail(message: str, code: int) -> typer.Exit:
    err.print(Text.assemble(("error:", "bold red"), f" {message}"))
    return typer.Exit(code)


def _execute(store: str | None, lease_ttl: float, body: Callable[[Runtime], Awaitable[T]]) -> T:
    """Open the runtime, run `body`, and map phalanx errors to exit statuses."""

    async def main() -> T:
        async with open_runtime(store, lease_ttl=lease_ttl) as runtime:
            return await body(runtime)

    try:
        return _run(main())
    except FencedError as exc:
        raise _fail(f"fenced out: {exc}", 1) from exc
    except (NonDeterminismError, StoreCorruptError, LeaseLostError) as exc:
        # LeaseLostError: a runner gave up on a store outage; its run stays resumable.
        raise _fail(str(exc), 1) from exc
    except (UserError, StoreUnavailableError) as exc:
        raise _fail(str(exc), 2) from exc
    except PhalanxError as exc:
        raise _fail(str(exc), 1) from exc


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        err.print("interrupted; the run stays resumable")
        raise typer.Exit(130) from None


def _parse_object(text: str | None, option: str) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"{option} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(character {exc.pos})",
            2,
        ) from exc
    if not isinstance(value, dict):
        raise _fail(
            f"{option} must be a JSON object of keyword arguments, not {type(value).__name__}", 2
        )
    return value


RunIdOption = Annotated[str | None, typer.Option("--run-id", metavar="ID", help="Use this run id.")]


def _check_run_id(run_id: str | None) -> None:
    if run_id is not None and not run_id.strip():
        raise _fail("--run-id must not be empty (leave it out for a generated id)", 2)


async def new_run_id(runtime: Runtime, run_id: str | None) -> str:
    """The id for a new run: `run_id` if still free, else a fresh one.

    Checked before the run is announced, so a taken id is refused instead of being
    reported "started" first.

    Raises:
        RunExistsError: `run_id` is taken.
    """
    if run_id is None:
        return runtime.entropy.token(8)
    if await runtime.store.stream_version(run_stream(run_id)) > 0:
        raise RunExistsError(run_id=run_id)
    return run_id


def _report(outcome: RunOutcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps(outcome.to_json(), ensure_ascii=False))
    else:
        out.print(f"run {outcome.run_id} {outcome.status}")
        if outcome.status == "completed":
            out.print(f"result: {json.dumps(outcome.result, ensure_ascii=False)}")
        elif outcome.error is not None:
            out.print(f"error: {outcome.error.get('type')}: {outcome.error.get('message')}")
    if not outcome.ok:
        raise typer.Exit(1)


def checked_workflow(
    target: str, input: str | None, run_id: str | None
) -> tuple[Callable[..., Awaitable[Any]], dict[str, Any]]:
    """The workflow `target` and its `--input`, checked before any store is opened.

    Raises `typer.Exit(2)` (one `error:` line) for bad JSON, an empty run id, a
    workflow that does not import, or inputs that do not fit its signature.
    """
    inputs = _parse_object(input, "--input")
    _check_run_id(run_id)
    sys.path.insert(0, os.getcwd())
    try:
        fn = load_workflow(target)
        check_inputs(fn, inputs)
    except UserError as exc:
        raise _fail(str(exc), 2) from exc
    return fn, inputs


@app.command()
def run(
    target: Annotated[str, typer.Argument(metavar="MODULE:FUNCTION", help="The workflow to run.")],
    input: Annotated[
        str | None,
        typer.Option("--input", metavar="JSON", help="JSON object of keyword arguments."),
    ] = None,
    run_id: RunIdOption = None,
    store: StoreOption = None,
    lease_ttl: LeaseOption = 15.0,
    as_json: JsonOption = False,
) -> None:
    """Start a workflow run; print its id and result; exit 1 if it failed."""
    fn, inputs = checked_workflow(target, input, run_id)

    async def body(runtime: Runtime) -> RunOutcome:
        chosen = await new_run_id(runtime, run_id)
        err.print(f"run {chosen} started ({target})")
        return await runtime.run(fn, inputs, run_id=chosen)

    _report(_execute(store, lease_ttl, body), as_json)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to continue.")],
    force: Annotated[
        bool, typer.Option("--force", help="Take the lease over now (fences the old runner).")
    ] = False,
    store: StoreOption = None,
    lease_ttl: LeaseOption = 15.0,
    as_json: JsonOption = False,
) -> None:
    """Continue a crashed run from its journal, without repeating finished steps."""
    sys.path.insert(0, os.getcwd())
    _report(_execute(store, lease_ttl, lambda rt: rt.resume(run_id, force=force)), as_json)


@app.command()
def recover(
    store: StoreOption = None,
    lease_ttl: LeaseOption = 15.0,
    as_json: JsonOption = False,
) -> None:
    """Resume every unfinished run whose lease has expired; report each one's fate.

    A run is resumed until it ends or parks (waiting for a signal or the dead-letter
    queue: reported, not waited on). Exit 1 if any run could not be resumed, failed or
    was cancelled; the others are recovered regardless.
    """
    sys.path.insert(0, os.getcwd())
    recovery = _execute(store, lease_ttl, lambda rt: rt.recover())
    if as_json:
        print(json.dumps(recovery.to_json(), ensure_ascii=False))
    else:
        for outcome in recovery.outcomes:
            parked = (
                " (parked: it waits for a signal; not waited on)"
                if outcome.status == "waiting"
                else ""
            )
            out.print(f"run {outcome.run_id} {outcome.status}{parked}")
        for run_id, error in recovery.failures.items():
            out.print(f"run {run_id} NOT RESUMED: {error['type']}: {error['message']}")
        out.print(
            f"{len(recovery.outcomes)} run(s) recovered, {len(recovery.failures)} could not be"
        )
    if not recovery.ok:
        raise typer.Exit(1)


def _time(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def signal(
    run_id: Annotated[str, typer.Argument(help="The run to signal.")],
    name: Annotated[str, typer.Argument(help="The signal's name (what the run waits for).")],
    data: Annotated[str | None, typer.Option("--data", help="JSON payload.")] = None,
    store: StoreOption = None,
) -> None:
    """Send a signal (e.g. a human's answer) to a waiting run."""
    try:
        payload = None if data is None else json.loads(data)
    except json.JSONDecodeError as exc:
        raise _fail(
            f"--data is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", 2
        ) from exc
    _execute(store, 15.0, lambda rt: rt.signal(run_id, name, payload))
    err.print(f"signal {name!r} sent to run {run_id}")


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run to cancel.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why; journaled.")
    ] = "cancelled from the command line",
    store: StoreOption = None,
) -> None:
    """Cancel a run (and its children) at its next await; its cleanup still runs."""
    sent = _execute(store, 15.0, lambda rt: rt.cancel(run_id, reason=reason))
    if sent:
        err.print(f"cancel requested for run {run_id}")
    else:
        err.print(f"run {run_id} had already ended; nothing to cancel")


def _version(value: bool) -> None:
    if value:
        out.print(f"phalanx {importlib.metadata.version('phalanx')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """A durable, observable runtime for multi-agent LLM systems."""


def _plain_help(command: Any) -> None:
    """Help that shows `--store URL` and `RUN_ID`, not typer's `<str>` type labels.

    Typer labels every parameter with its Python type (`<list[str]>`, `<bool>` even on
    flags); what a user needs is what to type. An option without a metavar of its own
    gets its name in capitals, a flag none, an argument only its name. (`command` is
    typer's click command tree, whose classes typer keeps private.)
    """
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if param.param_type_name == "option":
            if param.is_flag or param.count:
                param.metavar = ""
            elif param.metavar is None:
                param.metavar = (param.name or "value").upper()
        elif param.param_type_name == "argument":
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
            # Typer's argument class prints its type label whatever the metavar says.
            setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)


def _invoke(args: list[str] | None = None) -> int:
    """Run the command line; every usage error as one `error:` line (exit 2)."""
    command = typer.main.get_command(app)
    _plain_help(command)
    try:
        code = command.main(args=args, prog_name="phalanx", standalone_mode=False)
    except typer.Abort:
        err.print("interrupted")
        return 130
    except typer.TyperException as exc:  # click's usage errors, as typer vendors them
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            out.print(ctx.get_help())
            return 0
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        err.print(Text.assemble(("error:", "bold red"), f" {exc.format_message()}{hint}"))
        return int(getattr(exc, "exit_code", 2))
    return code if isinstance(code, int) else 0


def main() -> None:
    """Entry point of the `phalanx` console script."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("phalanx")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        # Exports only when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER) says so.
        telemetry = configure_from_env()
    except ConfigError as exc:
        err.print(Text.assemble(("error:", "bold red"), f" {exc}"))
        sys.exit(2)
    try:
        code = _invoke()
    finally:
        if telemetry is not None:
            telemetry.shutdown()  # flush the batch before the process ends
    sys.exit(code)
