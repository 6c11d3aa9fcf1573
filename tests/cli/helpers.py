"""Helpers for the `phalanx` command tests: a workflow module, a CLI runner, waits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PHALANX = str(Path(sys.executable).with_name("phalanx"))
COMMANDS = ("run", "resume", "runs", "events", "show", "signal", "cancel", "recover")

WORKFLOWS = textwrap.dedent(
    """
    import asyncio
    import os
    import signal

    import phalanx
    from phalanx import RetryPolicy


    def greet(name):
        return f"hello {name}"


    async def shout(text):
        return text.upper()


    @phalanx.workflow
    async def hello(ctx, name="world"):
        greeting = await ctx.step("greet", greet, name)
        return {"greeting": greeting, "loud": await ctx.step("shout", shout, greeting)}


    def boom():
        raise ValueError("boom")


    @phalanx.workflow
    async def failing(ctx):
        await ctx.step("boom", boom)


    def fails_once(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise ConnectionError("flaky network")
        return "ok"


    @phalanx.workflow
    async def retried(ctx, marker):
        policy = RetryPolicy(max_attempts=3, initial_interval=0.01)
        return await ctx.step("fetch", fails_once, marker, retry=policy)


    @phalanx.workflow
    async def waiter(ctx):
        return {"answer": await ctx.wait_for_signal("approve")}


    @phalanx.workflow
    async def parent(ctx, name="kid"):
        return await ctx.child(hello, name=name)


    @phalanx.workflow
    async def stuck_child(ctx):
        return await ctx.wait_for_signal("never")


    @phalanx.workflow
    async def stuck_parent(ctx):
        return await ctx.child(stuck_child)


    def die_once(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"


    @phalanx.workflow
    async def crashy(ctx, marker):
        return await ctx.step("die_once", die_once, marker)


    @phalanx.workflow
    async def typed(ctx, name: str, times: int = 2):
        return {"name": name, "times": times}


    @phalanx.workflow
    async def open_ended(ctx, **inputs):
        return inputs


    async def nap_once(marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            await asyncio.sleep(60)
        return "rested"


    @phalanx.workflow
    async def napper(ctx, marker):
        return await ctx.step("nap", nap_once, marker)


    def not_a_workflow():
        return None
    """
)


@dataclass
class Cli:
    """Runs `phalanx` in one test's directory, against one test's store."""

    root: Path
    env: dict[str, str]
    #: The test's store URL (tests/conftest.py `url`: each backend in turn).
    store: str

    def __call__(
        self, *args: str, store: str | None = "", timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """`phalanx ARGS --store STORE` (the test's store by default; None: no --store)."""
        argv = [PHALANX, *args]
        if store is not None:
            argv += ["--store", store or self.store]
        return subprocess.run(
            argv, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """Start `phalanx ARGS --store STORE` in the background."""
        return subprocess.Popen(
            [PHALANX, *args, "--store", self.store],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def runs(self, *args: str) -> dict[str, dict[str, Any]]:
        return {r["run_id"]: r for r in self.json("runs", *args)}

    def events(self, run_id: str) -> list[dict[str, Any]]:
        done = self("events", run_id, "--json")
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in done.stdout.splitlines()]


def make_cli(tmp_path: Path, url: str) -> Cli:
    """A CLI runner in `tmp_path`, which gets the test workflows (`cliflows.py`)."""
    (tmp_path / "cliflows.py").write_text(WORKFLOWS, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    return Cli(tmp_path, env, url)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"{proc.args} did not exit:\n{out}\n{err}") from None
    return proc.returncode, out, err


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill `proc` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def assert_usage_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit status 2, a one-line `error:` on stderr naming the problem, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert done.stderr.startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, (needle, done.stderr)
