"""Every code block of README.md runs, so an example can never break silently.

Blocks are taken from the README itself. Each runs as a user would, from the
repository root, in its own process, on its own store (`PHALANX_STORE`), offline:

- a `python` block runs as a module that may `await` at top level; it fails if it
  raises, or leaves a `RunOutcome` that did not complete;
- a `bash` block runs under `bash -euo pipefail`, with `phalanx` on the PATH: every
  command must succeed.

An HTML comment right before a block (invisible on the rendered page) can complete a
fragment: `<!-- readme-test: prelude=examples/readme/X.py -->` runs that file first
(it defines the names the fragment takes as given; a `.sh` prelude is sourced before a
bash block), and `in-workflow` runs the block as the body of a workflow, where `ctx`
is the workflow context. A command or block that needs what a test cannot have (a real
model, a network install, a trace backend) is skipped only when listed below, with the
reason and what covers it instead.
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent

#: Commands not run, by a piece of their text: why, and what covers them instead.
SKIPPED_COMMANDS = {
    "bash scripts/setup": "installs the package into .venv, which CI's own set-up step does",
    "bash scripts/test": "runs this very test suite",
    "PHALANX_MODEL=openai-compatible:llama3.1": (
        "needs a real model server; tests/demo/test_demo.py runs the demo against a local "
        "OpenAI-compatible HTTP server"
    ),
    "pip install 'phalanx[otel]'": "installs from the network; the dev install has the extra",
    "pip install 'arize-phoenix": "installs Arize Phoenix from the network",
    "~/.phoenix/bin/phoenix serve": (
        "serves Arize Phoenix; tests/integration/test_phoenix.py runs the demo against it"
    ),
    "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:6006": "points at Phoenix (see above)",
    "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318": (
        "needs an OTLP collector; tests/observe/test_export.py exports to a live receiver"
    ),
}
#: Blocks whose every command needs one of the above (by a piece of the block's text).
SKIPPED_BLOCKS = {
    "OTEL_SERVICE_NAME=research-bot": "exports to an OTLP collector (see above)",
    "OTEL_SERVICE_NAME=phalanx-demo": "exports to Arize Phoenix (see above)",
}

_FENCE = re.compile(
    r"(?:<!--\s*readme-test:(?P<directives>[^>]*)-->\s*\n)?```(?P<lang>\w*)\n(?P<code>.*?)```",
    re.DOTALL,
)


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    lang: str
    code: str
    line: int
    prelude: Path | None
    in_workflow: bool

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.lang}"


def readme_blocks() -> list[Block]:
    """Every fenced block of the README, with its test directives."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        directives = (match["directives"] or "").split()
        prelude = next((d.partition("=")[2] for d in directives if d.startswith("prelude=")), None)
        unknown = [d for d in directives if d != "in-workflow" and not d.startswith("prelude=")]
        assert not unknown, f"unknown readme-test directive(s) {unknown}"
        blocks.append(
            Block(
                lang=match["lang"],
                code=match["code"],
                line=text.count("\n", 0, match.start("code")),
                prelude=None if prelude is None else ROOT / prelude,
                in_workflow="in-workflow" in directives,
            )
        )
    return blocks


BLOCKS = readme_blocks()

# Runs a block as a module that may await at top level; a RunOutcome left behind that
# did not complete is a failure the block would otherwise print and shrug off.
_PYTHON_RUNNER = """
import ast, asyncio, sys
import phalanx

def check(namespace):
    for name, value in namespace.items():
        if isinstance(value, phalanx.RunOutcome) and not value.ok:
            sys.exit(f"{name}: run {value.run_id} {value.status}: {value.error}")

namespace = {"__name__": "__main__"}
for path, label in ((sys.argv[1], "prelude"), (sys.argv[2], "README block")):
    source = open(path, encoding="utf-8").read()
    code = compile(source, label, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if asyncio.iscoroutine(result):
        asyncio.run(result)
check(namespace)
"""

_WORKFLOW_WRAPPER = """\
import phalanx

@phalanx.workflow
async def readme_block(ctx):
{body}
    return None

async with phalanx.open_runtime() as runtime:
    block_outcome = await runtime.run(readme_block, {{}})
"""


def _environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHALANX_", "OTEL_"))}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        PHALANX_STORE=f"sqlite:///{tmp_path / 'readme.db'}",
        QUICKSTART_LEDGER=str(tmp_path / "ledger.jsonl"),
        CRM_KEY="sk-readme",
        COLUMNS="100",
    )
    return env


def _run_python(block: Block, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = block.code
    if block.in_workflow:
        code = _WORKFLOW_WRAPPER.format(body=textwrap.indent(code, "    "))
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    prelude = block.prelude
    if prelude is None:
        prelude = tmp_path / "empty.py"
        prelude.touch()
    return subprocess.run(
        [sys.executable, "-c", _PYTHON_RUNNER, str(prelude), str(script)],
        cwd=ROOT, env=_environment(tmp_path), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def _commands(code: str) -> list[str]:
    """The block's commands, continuation lines joined."""
    return code.replace("\\\n", " ").splitlines()


def _run_bash(block: Block, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    lines = []
    for command in _commands(block.code):
        skipped = next((why for text, why in SKIPPED_COMMANDS.items() if text in command), None)
        lines.append(f": skipped {shlex.quote(skipped)}" if skipped else command)
    prelude = f"source {block.prelude}\n" if block.prelude else ""
    script = tmp_path / "block.sh"
    script.write_text("set -euo pipefail\n" + prelude + "\n".join(lines) + "\n", encoding="utf-8")
    return subprocess.run(
        ["bash", str(script)],
        cwd=ROOT, env=_environment(tmp_path), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip


def test_the_readme_has_the_blocks_this_test_expects() -> None:
    """The parser finds every fence: python and bash blocks, and the layout tree."""
    fences = README.read_text(encoding="utf-8").count("```")
    assert fences == 2 * len(BLOCKS), "a fence the parser missed"
    assert {b.lang for b in BLOCKS} == {"python", "bash", "mermaid", ""}
    assert all(b.prelude is None or b.prelude.exists() for b in BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.lang in ("python", "bash")], ids=lambda b: b.id
)
def test_readme_block_runs(block: Block, tmp_path: Path) -> None:
    """The block runs as written (completed by its prelude, if it names one) and succeeds."""
    skipped = next((why for text, why in SKIPPED_BLOCKS.items() if text in block.code), None)
    if skipped:
        pytest.skip(f"listed in SKIPPED_BLOCKS: {skipped}")
    if block.lang == "python":
        done = _run_python(block, tmp_path)
    elif block.lang == "bash":
        done = _run_bash(block, tmp_path)
    else:
        raise AssertionError(f"{block.id}: no way to run a {block.lang!r} block")
    assert done.returncode == 0, (
        f"{block.id}\n{block.code}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
    )
    assert "Traceback" not in done.stderr, done.stderr


def test_the_layer_diagram_is_the_layer_contract_ci_checks() -> None:
    """The README's Mermaid layers, top to bottom, are pyproject's import-linter layers."""
    [diagram] = [b for b in BLOCKS if b.lang == "mermaid"]
    drawn = re.findall(r"(\w+)\[", diagram.code)  # each node, where first labelled
    edges = re.findall(r"(\w+)(?:\[[^\]]*\])?\s*-->\s*(\w+)", diagram.code)
    assert edges == list(itertools.pairwise(drawn)), "one chain, drawn top to bottom"
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    [layers] = [
        c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    assert drawn == [layer.lstrip("_") for layer in layers]
