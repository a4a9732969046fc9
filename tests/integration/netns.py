"""Two network namespaces joined by a veth pair, with IPv6 addresses only.

`server` has fd6e::1 and `client` fd6e::2 (and each its loopback); there is no IPv4
address but 127.0.0.1 and no route out, so a program that binds 0.0.0.0 cannot be reached
from the client, and nothing the servers do can leave the machine.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.tools import require, unavailable

_names = itertools.count()
# Runs in the client namespace: connect, send, print what came back (or why not).
_PROBE = """
import socket, sys, time
host, port, payload, deadline = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), time.monotonic() + float(sys.argv[4])
while True:
    try:
        with socket.create_connection((host, port), timeout=5) as conn:
            if payload:
                conn.sendall(payload.decode("unicode_escape").encode("latin-1"))
            conn.settimeout(5)
            data = b""
            try:
                while len(data) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except socket.timeout:
                pass
            sys.stdout.buffer.write(data)
            sys.exit(0)
    except OSError as error:
        if time.monotonic() > deadline:
            print(error, file=sys.stderr)
            sys.exit(1)
        time.sleep(0.2)
"""


@dataclass
class Link:
    server: str
    client: str
    server_address: str = "fd6e::1"
    client_address: str = "fd6e::2"
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: Sequence[str | Path], *, cwd: Path, env: dict[str, str] | None = None) -> None:
        """Start a server in the server namespace; it is stopped (by its PID) at the end."""
        with (cwd / f"{Path(str(argv[0])).name}.log").open("wb") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", self.server, *(str(a) for a in argv)],
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)

    def probe(self, port: int, payload: str = "", *, host: str | None = None, seconds: float = 30) -> bytes:
        """What a connection from the client to host:port (the server's address) reads back.
        `payload` is sent first (Python escapes such as \\r\\n allowed)."""
        result = subprocess.run(
            [
                *("ip", "netns", "exec", self.client, sys.executable, "-c", _PROBE),
                *(host or self.server_address, str(port), payload, str(seconds)),
            ],
            capture_output=True,
            check=False,
            timeout=seconds + 30,
        )
        assert result.returncode == 0, f"[{host or self.server_address}]:{port}: {result.stderr.decode()}"
        return result.stdout

    def http(self, port: int, path: str = "/", *, host: str = "localhost") -> bytes:
        return self.probe(port, f"GET {path} HTTP/1.1\\r\\nHost: {host}\\r\\nConnection: close\\r\\n\\r\\n")

    def http_until(self, port: int, path: str, status: bytes = b"200", *, seconds: float = 120) -> bytes:
        """Ask until the answer has `status` (a server may listen before it is ready)."""
        deadline = time.monotonic() + seconds
        while True:
            reply = self.http(port, path)
            if reply.startswith(b"HTTP/1.1 " + status) or time.monotonic() > deadline:
                return reply
            time.sleep(1)

    def run_in_client(self, argv: Sequence[str | Path]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.client, *(str(a) for a in argv)],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def ipv6_link() -> Iterator[Link]:
    require("ip", "iproute2")
    if os.geteuid() != 0:
        unavailable("network namespaces need root")
    number = f"{os.getpid()}-{next(_names)}"
    link = Link(server=f"meshseed-s{number}", client=f"meshseed-c{number}")
    veth = f"ms{os.getpid() % 100000}{next(_names)}"
    try:
        for namespace in (link.server, link.client):
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("link", "add", f"{veth}s", "type", "veth", "peer", "name", f"{veth}c")
        for namespace, end, address in (
            (link.server, f"{veth}s", link.server_address),
            (link.client, f"{veth}c", link.client_address),
        ):
            _ip("link", "set", end, "netns", namespace)
            _ip("-n", namespace, "address", "add", f"{address}/64", "dev", end, "nodad")
            _ip("-n", namespace, "link", "set", end, "up")
        yield link
    finally:
        for process in link.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in link.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for namespace in (link.server, link.client):
            subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)


@pytest.fixture
def link() -> Iterator[Link]:
    """A fresh pair of namespaces for one test."""
    with ipv6_link() as link:
        yield link
