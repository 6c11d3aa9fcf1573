"""Network namespaces for partition tests: workers on their own links to PostgreSQL.

Each worker namespace gets loopback and one veth pair to the root namespace, a /30 of
its own in 10.X.Y.0 (X, Y random per test, so parallel tests never collide). A
PostgreSQL cluster of the test's own listens on 127.0.0.1 and on the root side of
every pair, with trust login from those /30s only. Cutting a worker off is
`ip link set ROOT_SIDE down`; healing is `up`. Only loopback and these namespaces
are ever addressed. Everything is removed on exit.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from tests.conftest import PG_URL, ROOT, PrivatePostgres, _free_port, missing


def sh(*argv: str) -> None:
    """Run a set-up command; fail with its output."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"


@dataclass(frozen=True)
class Link:
    """A worker namespace and its veth pair to the root namespace."""

    namespace: str
    root_side: str
    server_address: str  # PostgreSQL's address as the namespace reaches it

    @property
    def prefix(self) -> tuple[str, ...]:
        """Run a command inside the namespace."""
        return ("ip", "netns", "exec", self.namespace)

    def cut(self) -> None:
        sh("ip", "link", "set", self.root_side, "down")

    def heal(self) -> None:
        sh("ip", "link", "set", self.root_side, "up")


def require_namespaces() -> None:
    """Fail in CI (skip elsewhere), saying why, when namespaces cannot be made here."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        missing("partition tests need root and iproute2 (ip netns) to make network namespaces")
    probe = f"phxprobe{secrets.token_hex(3)}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        missing(f"cannot create a network namespace here: {done.stderr.strip()}")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


@contextlib.contextmanager
def links(count: int) -> Iterator[list[Link]]:
    """`count` worker namespaces, each linked to the root namespace."""
    require_namespaces()
    tag = secrets.token_hex(2)
    second, third = 64 + secrets.randbelow(180), secrets.randbelow(60) * 4
    made: list[Link] = []
    try:
        for n in range(count):
            ns, root_side, inner = f"phx{tag}w{n}", f"px{tag}r{n}", f"px{tag}n{n}"
            net = f"10.{second}.{third + n}"
            sh("ip", "netns", "add", ns)
            made.append(Link(ns, root_side, f"{net}.1"))
            sh("ip", "link", "add", root_side, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", inner, "netns", ns)
            sh("ip", "addr", "add", f"{net}.1/30", "dev", root_side)
            sh("ip", "link", "set", root_side, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{net}.2/30", "dev", inner)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield made
    finally:
        for link in made:
            subprocess.run(["ip", "link", "del", link.root_side], capture_output=True)
            subprocess.run(["ip", "netns", "del", link.namespace], capture_output=True)


@contextlib.contextmanager
def cluster_on(made: list[Link]) -> Iterator[PrivatePostgres]:
    """A throwaway PostgreSQL listening on loopback and on every link's root side."""
    if shutil.which("pg_createcluster") is None:
        missing("partition tests need pg_createcluster (postgresql-common)")
    port = str(PG_URL.rsplit(":", 1)[1].split("/", 1)[0])
    found = subprocess.run(
        ["bash", str(ROOT / "scripts" / "pg-cluster"), port], capture_output=True, text=True
    )
    if found.returncode != 0:
        missing(found.stderr.strip())
    version = found.stdout.split()[0]
    cluster = PrivatePostgres(version, f"phalanx_net_{secrets.token_hex(4)}", _free_port())
    sh("pg_createcluster", version, cluster.name, "--port", str(cluster.port), "--",
       "--auth=trust")  # fmt: skip
    try:
        conf = f"/etc/postgresql/{version}/{cluster.name}"
        addresses = ",".join(["127.0.0.1", *(link.server_address for link in made)])
        with open(f"{conf}/postgresql.conf", "a", encoding="utf-8") as f:
            f.write(f"\nlisten_addresses = '{addresses}'\n")
        with open(f"{conf}/pg_hba.conf", "a", encoding="utf-8") as f:
            for link in made:
                f.write(f"host all all {link.server_address.rsplit('.', 1)[0]}.0/30 trust\n")
        started = cluster.ctl("start")
        assert started.returncode == 0, started.stdout + started.stderr
        yield cluster
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, cluster.name], capture_output=True, timeout=120
        )
