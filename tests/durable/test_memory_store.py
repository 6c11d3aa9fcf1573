"""Durable runs on the in-memory store (`memory://`); the protocol itself is in conformance."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

import phalanx
from phalanx import ConfigError, NewEvent
from phalanx.journal import MemoryEventStore, store_from_url
from tests.cli.helpers import make_cli
from tests.durable import workflows as wf
from tests.durable.helpers import crashes, status


def _named() -> str:
    return f"memory://m_{secrets.token_hex(6)}"


async def test_a_crashed_run_resumes_from_a_named_memory_store() -> None:
    """A run crashed on memory://NAME is resumed by another runtime there, steps not repeated."""
    url = _named()
    async with phalanx.open_runtime(url, lease_ttl=30) as dead:
        wf.CRASH_AT.add("c")
        await crashes(dead.run(wf.pipeline, {"n": 1}, run_id="crashed"))
    async with phalanx.open_runtime(url, lease_ttl=30) as survivor:
        outcome = await survivor.resume("crashed", force=True)
        assert outcome.ok and outcome.result == {"a": 2, "b": 12, "c": 112}
        assert await status(survivor, "crashed") == "completed"
    assert wf.CALLS == {"a": 1, "b": 1, "c": 2}


async def test_unnamed_memory_stores_are_private() -> None:
    """Each store built from `memory://` is a fresh database nobody else sees."""
    first, second = store_from_url("memory://"), store_from_url("memory://")
    await first.open()
    await second.open()
    await first.append("s", [NewEvent("E")])
    assert await second.read_stream("s") == []
    assert await first.stream_version("s") == 1


async def test_a_named_memory_store_outlives_its_stores() -> None:
    """Closing every store on memory://NAME keeps its events for the next one opened."""
    url = _named()
    store = store_from_url(url)
    await store.open()
    await store.append("s", [NewEvent("E", {"i": 1})])
    await store.close()
    again = store_from_url(url)
    await again.open()
    assert [e.data for e in await again.read_stream("s")] == [{"i": 1}]


async def test_a_closed_memory_store_is_unavailable() -> None:
    """A memory store used before open() or after close() raises StoreUnavailableError."""
    store = MemoryEventStore()
    with pytest.raises(phalanx.StoreUnavailableError, match="not open"):
        await store.append("s", [NewEvent("E")])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("memory:///some/path", "memory:// or memory://NAME"),
        ("memory://x?synchronous=full", "unknown options ['synchronous']"),
        ("memory://x?max_payload_bytes=0", "max_payload_bytes"),
    ],
)
def test_a_bad_memory_url_is_a_config_error(url: str, reason: str) -> None:
    """A memory URL with a path or an unknown option is a ConfigError naming the fix."""
    with pytest.raises(ConfigError) as info:
        store_from_url(url)
    assert reason in str(info.value) and "memory://" in str(info.value)


def test_run_on_memory_prints_the_result_and_help_says_not_durable(tmp_path: Path) -> None:
    """`phalanx run --store memory://` runs in one process; `--help` says it is not durable."""
    cli = make_cli(tmp_path, "memory://")
    done = cli("run", "cliflows:hello", "--input", '{"name": "ada"}', "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"]["greeting"] == "hello ada"
    assert not (tmp_path / ".phalanx").exists(), "nothing is written to disk"
    help_text = " ".join(cli("run", "--help", store=None).stdout.split())
    assert "memory://" in help_text and "NOT durable" in help_text
