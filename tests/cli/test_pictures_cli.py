"""`phalanx timeline` and `phalanx diagram` as a user runs them: real processes, both stores."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phalanx.testing import load_recorded, read_recorded

PHALANX = str(Path(sys.executable).with_name("phalanx"))
ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "docs" / "pictures" / "research-run.jsonl"
RUN = "research-demo"


def phalanx(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    env["PYTHONPATH"] = str(cwd)
    return subprocess.run(
        [PHALANX, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def recorded(url: str) -> str:
    """The research demo's recorded run in the test's store."""
    asyncio.run(load_recorded(url, read_recorded(RECORDED)))
    return url


@pytest.mark.parametrize("suffix", [".svg", ".png", ".html"])
def test_timeline_writes_each_format(recorded: str, tmp_path: Path, suffix: str) -> None:
    """Each extension gives its format; the text formats name web_search as timed_out."""
    out = tmp_path / f"pics/timeline{suffix}"
    done = phalanx(tmp_path, "timeline", RUN, "--store", recorded, "-o", str(out))
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    assert f"wrote {out}" in done.stderr
    if suffix == ".png":
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    else:
        assert b"web_search" in data and b"timed_out" in data


@pytest.mark.parametrize("suffix", [".svg", ".png", ".mmd", ".dot"])
def test_diagram_writes_each_format(recorded: str, tmp_path: Path, suffix: str) -> None:
    """Each extension gives its format; every branch is named with its outcome."""
    out = tmp_path / f"diagram{suffix}"
    done = phalanx(tmp_path, "diagram", RUN, "--store", recorded, "-o", str(out))
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    else:
        for name, outcome in (("vector_db", b"succeeded"), ("web_search", b"timed_out")):
            assert name.encode() in data and outcome in data


def test_bad_extension_unknown_run_and_bad_object_are_usage_errors(
    recorded: str, tmp_path: Path
) -> None:
    """Exit 2 with one clear line, never a traceback, and nothing written."""
    cases = [
        (("timeline", RUN, "-o", "t.pdf"), "give a file ending in .svg, .png, .html"),
        (("diagram", RUN, "-o", "d.jpg"), "give a file ending in .svg, .png, .mmd, .dot"),
        (("timeline", "no-such-run", "-o", "t.svg"), "no run 'no-such-run'"),
        (("diagram", "nosuchmodule:thing", "-o", "d.mmd"), "importing nosuchmodule failed"),
        (("diagram", "os:sep", "-o", "d.mmd"), "declares no topology"),
    ]
    for args, message in cases:
        done = phalanx(tmp_path, *args[:2], "--store", recorded, *args[2:])
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
        assert not (tmp_path / args[-1]).exists()


def test_declared_topology_of_agents_and_of_a_workflow(url: str, tmp_path: Path) -> None:
    """Agents and their tools are drawn from code; a workflow says what is not knowable."""
    (tmp_path / "team.py").write_text(
        textwrap.dedent(
            """
            from phalanx.agents import Agent
            from phalanx.tools import tool

            @tool(timeout=5)
            def lookup(topic: str) -> str:
                return topic

            TEAM = [
                Agent("scout", role="research", instructions="You are scout.", tools=[lookup]),
                Agent("writer", instructions="You are writer."),
            ]
            """
        )
    )
    out = tmp_path / "team.mmd"
    done = phalanx(tmp_path, "diagram", "team:TEAM", "--store", url, "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "agent scout" in text and "agent writer" in text
    assert "tool lookup<br/>timeout 5s" in text and '|"may call"|' in text

    out = tmp_path / "research.dot"
    done = phalanx(tmp_path, "diagram", "phalanx.demo:research", "--store", url, "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "workflow research" in text and "cannot be known statically" in text
    assert "tool web_search" in text  # declared at module level in the demo
