"""A real `phalanx ui` process for the dashboard tests, and plain HTTP helpers."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PHALANX = str(Path(sys.executable).with_name("phalanx"))
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """A running dashboard: its base URL (with the token, if any) and its output."""

    url: str
    process: subprocess.Popen[str]
    token: str | None

    @property
    def host(self) -> str:
        return str(urlsplit(self.url).hostname)

    @property
    def port(self) -> int:
        return int(urlsplit(self.url).port or 80)

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        body: str | None = None,
        headers: Mapping[str, str] | None = None,
        host: str | None = None,
    ) -> tuple[int, dict[str, str], str]:
        """One HTTP request; returns status, headers (lower-case names) and body text."""
        conn = http.client.HTTPConnection(host or self.host, self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            text = response.read().decode("utf-8", "replace")
            return response.status, {k.lower(): v for k, v in response.getheaders()}, text
        finally:
            conn.close()

    def post_form(self, path: str, form: Mapping[str, str], **headers: str) -> tuple[int, str]:
        """POST an urlencoded form; returns status and body."""
        from urllib.parse import urlencode

        status, _, text = self.request(
            path,
            method="POST",
            body=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        )
        return status, text


def hermetic_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHALANX_", "OPENAI_"))}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


@contextmanager
def dashboard(url: str, *args: str, cwd: Path = ROOT) -> Iterator[Server]:
    """Start `phalanx ui --port 0` over store `url`; stop it (SIGTERM) afterwards."""
    process = subprocess.Popen(
        [PHALANX, "ui", "--port", "0", "--store", url, *args],
        cwd=cwd,
        env=hermetic_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        address = token = None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"phalanx ui exited: {''.join(lines)}")
            lines.append(line)
            if line.startswith("phalanx dashboard on "):
                address = line.split(" on ", 1)[1].strip()
            if line.startswith("token "):
                token = line.split()[1]
            if line.startswith("Ctrl-C"):
                break
        assert address is not None, "".join(lines)
        yield Server(address, process, token)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def csrf_of(page: str) -> str:
    """The CSRF token a dashboard page embeds in its forms."""
    marker = 'name="csrf" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `phalanx ARGS --store URL` from the repository root."""
    return subprocess.run(
        [PHALANX, *args, "--store", url],
        cwd=ROOT,
        env=hermetic_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def status_of(url: str, run_id: str) -> str | None:
    """A run's status, as `phalanx runs --json` says."""
    done = cli(url, "runs", "--json")
    for run in json.loads(done.stdout or "[]"):
        if run["run_id"] == run_id:
            return str(run["status"])
    return None
