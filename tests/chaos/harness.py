"""Spawning real `phalanx` processes for the chaos tests, and reading what they left."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phalanx import store_from_url

ROOT = Path(__file__).resolve().parents[2]
#: The `phalanx` console script of the interpreter running the tests.
PHALANX = str(Path(sys.executable).with_name("phalanx"))


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a spawned process: the repo importable, no stray store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Proc:
    """A spawned process whose output goes to files (no pipe can fill and block it)."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8")

    @property
    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8")

    def describe(self) -> str:
        return (
            f"{self.popen.args}\nexit {self.popen.returncode}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


@dataclass
class Workspace:
    """One test's directory, store and spawned processes (killed at the end)."""

    root: Path
    env: dict[str, str]
    url: str = ""
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.url = self.url or f"sqlite:///{self.root / 'journal.db'}"

    def spawn(self, *argv: str, label: str) -> Proc:
        """Start `argv` in the workspace, output to `label.out` / `label.err`."""
        n = len(self.procs)
        out, err = self.root / f"{n}-{label}.out", self.root / f"{n}-{label}.err"
        with out.open("wb") as o, err.open("wb") as e:
            popen = subprocess.Popen(argv, cwd=self.root, env=self.env, stdout=o, stderr=e)
        proc = Proc(popen, out, err)
        self.procs.append(proc)
        return proc

    def spawn_cli(self, *args: str, label: str) -> Proc:
        """Start `phalanx ARGS --store URL`."""
        return self.spawn(PHALANX, *args, "--store", self.url, label=label)

    def cli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `phalanx ARGS --store URL` to completion."""
        return subprocess.run(
            [PHALANX, *args, "--store", self.url],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's journal, as `phalanx events RUN --json` prints it ([] if unknown)."""
        done = self.cli("events", run_id, "--json")
        if done.returncode == 2 and "no run" in done.stderr:
            return []
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]

    def peek(self, run_id: str) -> list[dict[str, Any]]:
        """The run's journal read in-process, in the `events --json` shape.

        For polling: starting the CLI for every look costs a Python start-up each.
        """

        async def read() -> list[dict[str, Any]]:
            store = store_from_url(self.url)
            await store.open()
            try:
                return [e.to_json() for e in await store.read_stream(f"run:{run_id}")]
            finally:
                await store.close()

        return asyncio.run(read())

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait()


@contextmanager
def workspace(root: Path, url: str = "", **env: str) -> Iterator[Workspace]:
    """A workspace on store `url` (a SQLite file in `root` by default) whose leftover
    processes are killed on exit, whatever happened."""
    ws = Workspace(root, child_env(**env), url)
    try:
        yield ws
    finally:
        ws.kill_all()


def wait_exit(proc: Proc, timeout: float) -> int:
    """Wait for `proc` to exit; kill it and fail if it takes longer than `timeout`."""
    try:
        return proc.popen.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.popen.kill()
        proc.popen.wait()
        raise AssertionError(f"timed out after {timeout}s:\n{proc.describe()}") from None


def poll_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Call `predicate()` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
