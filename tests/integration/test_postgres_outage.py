"""A runner rides out a PostgreSQL outage shorter than its lease, by itself.

One test restarts a real server: a throwaway cluster of its own (`private_postgres`),
never the shared one, whose restart would fail every other test using it at that
moment. The others cut the runner off through a TCP proxy of their own, which lets an
outage last as long as the test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import PG_URL, PrivatePostgres, drop_schema, require_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PHALANX = str(Path(sys.executable).with_name("phalanx"))

WORKFLOW = textwrap.dedent(
    """
    import time

    import phalanx


    def work(i):
        time.sleep(0.1)
        return i


    @phalanx.workflow
    async def long(ctx, steps):
        return sum([await ctx.step(f"s{i}", work, i) for i in range(steps)])
    """
)


def events(url: str, run_id: str) -> list[dict[str, object]]:
    """The run's events through the CLI, retried while the server restarts."""
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            [PHALANX, "events", run_id, "--json", "--store", url],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if done.returncode == 0:
            return [json.loads(line) for line in done.stdout.splitlines()]
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.2)


class Proxy:
    """A TCP proxy to the PostgreSQL server that a test can cut and restore."""

    def __init__(self) -> None:
        parts = urlsplit(PG_URL)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = urlunsplit(parts._replace(netloc=parts.netloc.replace(
            f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname),
            f"127.0.0.1:{self.port}",
        )))  # fmt: skip
        self.up = True
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self.up:
                client.close()  # refused, as by a server that is down
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        self.up = False
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def start_run(tmp_path: Path, url: str, steps: int, lease_ttl: float) -> subprocess.Popen[str]:
    (tmp_path / "outageflows.py").write_text(WORKFLOW, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    return subprocess.Popen(
        [PHALANX, "run", "outageflows:long", "--input", json.dumps({"steps": steps}),
         "--run-id", "r", "--lease-ttl", str(lease_ttl), "--store", url],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_steps(url: str, runner: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 30
    while sum(e["type"] == "StepCompleted" for e in events(url, "r")) < count:
        assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
        time.sleep(0.1)


def completed_steps(url: str) -> list[str]:
    return [str(e["data"]["name"]) for e in events(url, "r") if e["type"] == "StepCompleted"]  # type: ignore[index]


@pytest.fixture
def schema() -> object:
    require_postgres()
    name = f"t_{secrets.token_hex(6)}"
    yield name
    asyncio.run(drop_schema(name))


def test_a_run_rides_out_a_cut_shorter_than_its_lease(tmp_path: Path, schema: str) -> None:
    """Connections dropped and refused for 1.5 s: the runner retries and completes."""
    proxy = Proxy()
    try:
        url = f"{proxy.url}?schema={schema}"
        runner = start_run(tmp_path, url, steps=100, lease_ttl=15)
        wait_for_steps(url, runner, 5)
        proxy.cut()
        time.sleep(1.5)
        proxy.restore()
        out, err = runner.communicate(timeout=60)
    finally:
        proxy.close()
    direct = f"{PG_URL}?schema={schema}"
    assert runner.returncode == 0, (out, err)
    assert "Traceback" not in err, err
    assert len([line for line in err.splitlines() if "store unavailable" in line]) == 1, err
    assert completed_steps(direct) == [f"s{i}" for i in range(100)]


def test_a_runner_cut_off_past_its_lease_stops_resumable(tmp_path: Path, schema: str) -> None:
    """An outage longer than the lease: exit 1, one line saying resumable; resume finishes."""
    proxy = Proxy()
    try:
        url = f"{proxy.url}?schema={schema}"
        runner = start_run(tmp_path, url, steps=100, lease_ttl=2)
        wait_for_steps(url, runner, 5)
        proxy.cut()
        out, err = runner.communicate(timeout=30)
    finally:
        proxy.close()
    assert runner.returncode == 1, (out, err)
    assert "Traceback" not in err, err
    [error] = [line for line in err.splitlines() if line.startswith("error:")]
    assert "resumable" in error and "phalanx resume r" in error, err
    direct = f"{PG_URL}?schema={schema}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    resumed = subprocess.run(
        [PHALANX, "resume", "r", "--store", direct], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert completed_steps(direct) == [f"s{i}" for i in range(100)]


def test_a_run_rides_out_a_server_restart_and_completes_by_itself(
    tmp_path: Path, private_postgres: PrivatePostgres
) -> None:
    """Restart PostgreSQL mid-run: the runner retries, says so in one line, completes."""
    (tmp_path / "outageflows.py").write_text(WORKFLOW, encoding="utf-8")
    url = private_postgres.url
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHALANX_")}
    steps = 200  # 20 s: still running when the (loaded, slow) restart is over
    runner = subprocess.Popen(
        [PHALANX, "run", "outageflows:long", "--input", json.dumps({"steps": steps}),
         "--run-id", "r", "--lease-ttl", "15", "--store", url],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while sum(e["type"] == "StepCompleted" for e in events(url, "r")) < 5:
            assert runner.poll() is None and time.monotonic() < deadline, runner.communicate()
            time.sleep(0.1)
        started = time.monotonic()
        restart = private_postgres.ctl("restart")
        restarted_in = time.monotonic() - started
        assert restart.returncode == 0, restart.stdout + restart.stderr
        assert runner.poll() is None, "the runner must not give up on a short outage"
        out, err = runner.communicate(timeout=60)
        journal = events(url, "r")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    assert runner.returncode == 0, (out, err)
    assert f"run r completed\nresult: {sum(range(steps))}" in out
    assert "Traceback" not in err, err
    outage = [line for line in err.splitlines() if "store unavailable" in line]
    assert len(outage) == 1, err  # reported once, in one line
    assert any("store back after" in line for line in err.splitlines()), err
    completed = [e["data"]["name"] for e in journal if e["type"] == "StepCompleted"]  # type: ignore[index]
    assert completed == [f"s{i}" for i in range(steps)]  # each once, in order: none lost
    assert journal[-1]["type"] == "RunCompleted"
    print(f"server restart took {restarted_in:.1f}s")
