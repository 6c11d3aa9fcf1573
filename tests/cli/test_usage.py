"""What a newcomer meets first: versions, help, usage errors, inputs, ids and stores.

Every check runs the real `phalanx` command in a test's own directory and store.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import one_backend

from .helpers import PHALANX, Cli, assert_usage_error

pytestmark = pytest.mark.slow

EVERY_COMMAND = (
    ("run",),
    ("resume",),
    ("recover",),
    ("runs",),
    ("events",),
    ("show",),
    ("signal",),
    ("cancel",),
    ("demo",),
    ("trace",),
    ("dlq", "list"),
    ("dlq", "show"),
    ("dlq", "retry"),
    ("dlq", "resolve"),
    ("dlq", "discard"),
    ("tools", "stats"),
)


@one_backend
def test_version_prints_the_installed_version(cli: Cli) -> None:
    """`phalanx --version` prints the package's version and exits 0."""
    done = cli("--version", store=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"phalanx {importlib.metadata.version('phalanx')}"


@one_backend
@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_help_shows_what_to_type_not_python_types(cli: Cli, command: tuple[str, ...]) -> None:
    """No `<str>`/`<list[str]>`/`<bool>` labels in help: metavars such as URL or RUN_ID."""
    done = cli(*command, "--help", store=None)
    assert done.returncode == 0, done.stderr
    assert not re.search(r"<\w+(\[[\w, \[\]]*\])?>", done.stdout), done.stdout
    if command not in (("trace",),):
        assert "--store" in done.stdout and "URL" in done.stdout


@one_backend
def test_store_help_documents_relative_and_absolute_sqlite_urls(cli: Cli) -> None:
    """`--store` help says sqlite:///x is relative and sqlite:////x absolute."""
    text = " ".join(cli("runs", "--help", store=None).stdout.replace("│", " ").split())
    assert "sqlite:///rel/path.db is relative" in text
    assert "sqlite:////abs/path.db (four slashes) absolute" in text


@one_backend
@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (("dlq", "resolve", "x"), "Missing option '--result'"),
        (("run",), "Missing argument 'MODULE:FUNCTION'"),
        (("nosuchcommand",), "No such command 'nosuchcommand'"),
        (("runs", "--nosuchoption"), "No such option: --nosuchoption"),
        (("runs", "--lease-ttl", "x"), "--lease-ttl"),
    ],
)
def test_usage_errors_come_in_one_style(cli: Cli, argv: tuple[str, ...], needle: str) -> None:
    """Click's usage errors read like ours: one `error:` line, exit 2, no box, no traceback."""
    done = cli(*argv, store=None)
    assert_usage_error(done, needle, "--help")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "╭" not in done.stderr and "Usage:" not in done.stderr


@one_backend
def test_unknown_demo_scenario_names_the_known_ones(cli: Cli) -> None:
    """`phalanx demo NAME` with a name no scenario has is a usage error listing them."""
    done = cli("demo", "nosuchdemo", store=None)
    assert done.returncode == 2
    assert "unknown demo scenario 'nosuchdemo'" in done.stderr
    assert "research" in done.stderr
    assert "Traceback" not in done.stderr


@one_backend
def test_research_demo_refuses_a_style(cli: Cli) -> None:
    """--style belongs to scenarios with variants; the research demo refuses it."""
    done = cli("demo", "research", "--style", "x", store=None)
    assert done.returncode == 2
    assert "--style is not an option of the research demo" in done.stderr


# -- inputs and run ids: refused before a run exists ---------------------------------


@pytest.mark.parametrize(
    ("inputs", "needles"),
    [
        ({"nope": 1}, ("nope: unknown input (it takes name, times)",)),
        ({"name": 5}, ("name: Input should be a valid string", "got 5")),
        ({"name": None}, ("name: Input should be a valid string",)),
    ],
)
def test_inputs_are_checked_against_the_signature(
    cli: Cli, inputs: dict[str, object], needles: tuple[str, ...]
) -> None:
    """Unknown keys and wrong types exit 2 naming the field; no run is created."""
    done = cli("run", "cliflows:typed", "--input", json.dumps(inputs))
    assert_usage_error(done, "cliflows:typed", *needles)
    assert "started" not in done.stderr
    assert cli.runs() == {}


def test_missing_required_input_is_refused(cli: Cli) -> None:
    """A required keyword argument left out of --input exits 2 naming it."""
    assert_usage_error(cli("run", "cliflows:crashy"), "marker: required")
    assert cli.runs() == {}


def test_inputs_that_match_run_unchanged(cli: Cli) -> None:
    """Valid inputs (defaults left out, **kwargs open) run and reach the workflow as given."""
    done = cli("run", "cliflows:typed", "--input", '{"name": "ada"}', "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"name": "ada", "times": 2}
    done = cli("run", "cliflows:open_ended", "--input", '{"a": 1, "b": [2]}', "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == {"a": 1, "b": [2]}


def test_duplicate_run_id_is_refused_before_it_is_announced(cli: Cli) -> None:
    """A taken --run-id exits 2 without first printing "started"; the old run is untouched."""
    assert cli("run", "cliflows:hello", "--run-id", "dup").returncode == 0
    before = cli.events("dup")
    done = cli("run", "cliflows:hello", "--run-id", "dup")
    assert_usage_error(done, "run 'dup' already exists")
    assert "started" not in done.stderr
    assert cli.events("dup") == before


@pytest.mark.parametrize("run_id", ["", "  "])
def test_empty_run_id_is_refused(cli: Cli, run_id: str) -> None:
    """`--run-id ''` exits 2 instead of silently choosing a random id."""
    assert_usage_error(cli("run", "cliflows:hello", "--run-id", run_id), "--run-id")
    assert cli.runs() == {}


# -- signals to ended runs ------------------------------------------------------------


def test_signal_to_an_ended_run_is_refused(cli: Cli) -> None:
    """`signal` on a completed run exits 2 ("already ended") and writes nothing."""
    assert cli("run", "cliflows:hello", "--run-id", "done").returncode == 0
    done = cli("signal", "done", "approve", "--data", "true")
    assert_usage_error(done, "run 'done' already ended (completed)")
    inbox = cli("events", "done", "--inbox", "--json")
    assert inbox.returncode == 0 and inbox.stdout == ""


# -- ids at 80 columns, and which store -------------------------------------------------


def test_listings_never_cut_ids_at_80_columns(cli: Cli) -> None:
    """`runs` at 80 columns prints every run and parent id whole, on one line."""
    long_id = "a-rather-long-run-id-" + "x" * 20
    assert cli("run", "cliflows:parent", "--run-id", long_id).returncode == 0
    for _ in range(3):
        assert cli("run", "cliflows:hello").returncode == 0
    ids = set(cli.runs())
    env = cli.env | {"COLUMNS": "80"}
    done = subprocess.run(
        [PHALANX, "runs", "--store", cli.store],
        cwd=cli.root, env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.startswith("store "), "the store (a URL may be longer than a line)"
    assert max(len(line) for line in lines) <= 80, done.stdout
    for run_id in ids:
        assert any(run_id in line for line in lines), (run_id, done.stdout)
    # Too narrow for two such ids side by side: the parent column gave way, not an id.
    assert any(line.split()[1:4:2] == [f"{long_id}.1", "completed"] for line in lines)


def test_runs_and_show_name_the_store_file_absolutely(cli: Cli, tmp_path: Path) -> None:
    """A relative sqlite:///x.db is shown as the absolute file it resolved to."""
    assert cli("run", "cliflows:hello", "--run-id", "h", store="sqlite:///rel/j.db").returncode == 0
    where = str((cli.root / "rel" / "j.db").resolve())
    listed = cli("runs", store="sqlite:///rel/j.db")
    assert listed.returncode == 0 and f"store {where}" in listed.stdout
    shown = cli("show", "h", store="sqlite:///rel/j.db")
    assert shown.returncode == 0 and f"store {where}" in shown.stdout


# -- the demo: its model checked first, its branches always reported ----------------------


def _demo(cli: Cli, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PHALANX, "demo", *args, "--store", cli.store],
        cwd=cli.root, env=cli.env | env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("model", "needle"),
    [
        ({"PHALANX_MODEL": "nonsense"}, "unknown model spec"),
        ({"PHALANX_MODEL": "openai:gpt-4o-mini", "OPENAI_API_KEY": ""}, "OPENAI_API_KEY"),
        ({"PHALANX_MODEL": "openai-compatible:m"}, "OPENAI_BASE_URL"),
    ],
)
def test_demo_checks_the_model_setting_before_starting(
    cli: Cli, model: dict[str, str], needle: str
) -> None:
    """A bad PHALANX_MODEL or a missing key exits 2 before any run is created."""
    done = _demo(cli, "--json", **model)
    assert_usage_error(done, needle)
    assert cli.runs() == {}


@one_backend
def test_failed_demo_still_reports_its_branches(cli: Cli) -> None:
    """A demo whose model is unreachable fails, and --json and the table list its branches."""
    unreachable = {
        "PHALANX_MODEL": "openai-compatible:m",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
    }
    done = _demo(cli, "--json", "--fault", "none", "--deadline", "5", **unreachable)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["status"] == "failed"
    assert set(report["branches"]) == {"vector_db", "web_search", "synthesis"}
    # The first branch to fail puts `all` out of reach: the others are cancelled then.
    statuses = [b["status"] for b in report["branches"].values()]
    assert set(statuses) <= {"failed", "cancelled"} and "failed" in statuses, report
    assert any("ModelConnectionError" in b["error"] for b in report["branches"].values())
    shown = cli.json("show", report["run_id"])
    [fan_out] = shown["fan_outs"]
    assert {k: v["status"] for k, v in fan_out["branches"].items()} == {
        k: v["status"] for k, v in report["branches"].items()
    }

    text = _demo(cli, "--fault", "none", "--deadline", "5", **unreachable)
    assert text.returncode == 1, text.stderr
    assert all(name in text.stdout for name in ("vector_db", "web_search", "synthesis"))
    hint = text.stdout[text.stdout.index("inspect:") :].replace("\n", "")
    assert f"phalanx show {json.loads(done.stdout)['run_id']}" not in hint, "a new run"
    assert f"--store {cli.store}" in hint, text.stdout
