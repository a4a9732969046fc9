"""Redis with Sentinel fails over within 10 s, as Open edX sees it through `redis:6379`.

Debian's redis-server, redis-sentinel and haproxy run three members and the router on ::1,
each started by the build's own start scripts and configs (redis-node-config and
redis-router-config), with only the members' names and ports replaced. The test SIGKILLs
the primary's redis-server and its sentinel (its pod), then measures how long until a
write through the router is acknowledged again, and checks that the killed member, started
again by the same script, rejoins as a replica.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.generated import Documents, config, manifests
from tests.tools import require

__all__ = ["manifests"]  # a fixture
LIMIT_SECONDS = 10.0
MEMBER_FILES = (
    "redis.conf",
    "sentinel.conf",
    "redis-lib.sh",
    "redis-start.sh",
    "sentinel-start.sh",
    "redis-ready.sh",
    "redis-prestop.sh",
)


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def command(port: int, *words: str, timeout: float = 1.0) -> bytes:
    """One inline command to ::1:port on a new connection, and what came back at first."""
    with socket.create_connection(("::1", port), timeout=timeout) as conn:
        conn.sendall(" ".join(words).encode() + b"\r\n")
        return conn.recv(65536)


def info(port: int) -> dict[str, str]:
    text = command(port, "INFO", "replication").decode()
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def wait_for(what: str, check: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()  # type: ignore[operator]
            if last:
                return
        except OSError as error:
            last = error
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {seconds} s (last: {last!r})")


@dataclass
class Member:
    index: int
    port: int
    sentinel_port: int
    root: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SELF_HOST": "::1",
            "SELF_PORT": str(self.port),
            "SELF_SENTINEL_PORT": str(self.sentinel_port),
            "REDIS_DATA": str(self.root / "data"),
            "SENTINEL_DIR": str(self.root / "sentinel"),
        }


@dataclass
class Cluster:
    conf: Path
    members: list[Member]
    router_port: int
    log: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, member: Member, name: str) -> None:
        script = {"redis": "redis-start.sh", "sentinel": "sentinel-start.sh"}[name]
        with (self.log / f"{name}-{member.index}.log").open("ab") as log:
            # The script execs the server, so this PID is the server's.
            process = subprocess.Popen(
                ["sh", str(self.conf / script)], env=member.env(), stdout=log, stderr=subprocess.STDOUT
            )
        member.processes[name] = process
        self.processes.append(process)

    def run(self, member: Member, script: str) -> int:
        return subprocess.run(["sh", str(self.conf / script)], env=member.env(), check=False).returncode

    def sentinel_master(self, member: Member) -> tuple[str, int]:
        words = command(member.sentinel_port, "SENTINEL", "get-master-addr-by-name", "openedx").split(b"\r\n")
        return words[2].decode(), int(words[4])

    def by_port(self, port: int) -> Member:
        (found,) = [m for m in self.members if m.port == port]
        return found


def substitute(text: str, members: list[Member], names: list[str]) -> str:
    """The pods' member names and ports, as ::1 and this test's ports."""
    for member, name in zip(members, names, strict=True):
        text = text.replace(f"{name} 6379 26379", f"::1 {member.port} {member.sentinel_port}")
        text = text.replace(f"{name}:6379", f"[::1]:{member.port}")
    return text


@pytest.fixture
def cluster(manifests: dict[str, Documents], tmp_path: Path) -> Iterator[Cluster]:
    require("redis-server", "redis-server")
    require("redis-sentinel", "redis-sentinel")
    require("redis-cli", "redis-tools")
    haproxy = require("haproxy", "haproxy")
    lib = config(manifests, "redis-node-config", "redis-lib.sh")
    names = re.findall(r"(redis-node-\d\S+) 6379 26379", lib)
    assert names == [f"redis-node-{i}.redis-node.openedx.svc.cluster.local" for i in range(3)]
    members = [Member(i, free_port(), free_port(), tmp_path / f"member-{i}") for i in range(3)]
    conf = tmp_path / "conf"
    conf.mkdir()
    for key in MEMBER_FILES:
        (conf / key).write_text(substitute(config(manifests, "redis-node-config", key), members, names))
    router_port = free_port()
    haproxy_cfg = substitute(config(manifests, "redis-router-config", "haproxy.cfg"), members, names)
    assert "bind :::6379\n" in haproxy_cfg
    (conf / "haproxy.cfg").write_text(haproxy_cfg.replace("bind :::6379\n", f"bind :::{router_port}\n"))
    log = tmp_path / "log"
    log.mkdir()
    for member in members:
        (member.root / "data").mkdir(parents=True)
        (member.root / "sentinel").mkdir()
    state = Cluster(conf, members, router_port, log)
    try:
        for member in members:
            state.start(member, "redis")
            state.start(member, "sentinel")
        with (log / "haproxy.log").open("ab") as out:
            state.processes.append(
                subprocess.Popen(
                    [haproxy, "-db", "-f", str(conf / "haproxy.cfg")], stdout=out, stderr=subprocess.STDOUT
                )
            )
        yield state
    finally:
        for process in state.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def write_through_router(cluster: Cluster, key: str) -> bool:
    try:
        return command(cluster.router_port, "SET", key, "1", timeout=0.5).startswith(b"+OK")
    except OSError:
        return False


def test_a_killed_primary_is_replaced_within_10_s_and_rejoins_as_a_replica(cluster: Cluster) -> None:
    first, *others = cluster.members
    # A new set: every member follows the seed, and each sentinel knows the others.
    wait_for("two replicas in sync", lambda: info(first.port).get("connected_slaves") == "2")
    for member in cluster.members:
        wait_for(
            f"sentinel {member.index} sees the others",
            lambda m=member: (
                b"num-other-sentinels\r\n$1\r\n2" in command(m.sentinel_port, "SENTINEL", "master", "openedx")
            ),
        )
        assert cluster.sentinel_master(member) == ("::1", first.port)
    wait_for("a write through the router", lambda: write_through_router(cluster, "before"))
    for member in cluster.members:
        assert cluster.run(member, "redis-ready.sh") == 0, member.index

    # Sentinel promotes only a replica it has seen in sync (INFO every 10 s, so up to 10 s).
    for member in others:
        wait_for(
            f"sentinel {member.index} sees both replicas in sync",
            lambda m=member: (
                command(m.sentinel_port, "SENTINEL", "replicas", "openedx").count(
                    b"master-link-status\r\n$2\r\nok"
                )
                == 2
            ),
        )
    # The primary's pod dies: its redis-server and its sentinel, with no warning.
    killed = time.monotonic()
    for process in first.processes.values():
        process.send_signal(signal.SIGKILL)
    attempt = 0
    while not write_through_router(cluster, f"after-{attempt}"):
        attempt += 1
        assert time.monotonic() - killed < LIMIT_SECONDS, "no writable primary through the router"
        time.sleep(0.05)
    failover = time.monotonic() - killed
    print(f"\nredis failover: a write through the router was acknowledged {failover:.2f} s after SIGKILL")
    assert failover < LIMIT_SECONDS

    host, port = cluster.sentinel_master(others[0])
    promoted = cluster.by_port(port)
    assert (host, promoted in others) == ("::1", True)
    assert info(promoted.port)["role"] == "master"
    assert command(promoted.port, "GET", "before").startswith(b"$1\r\n1")

    # The pod comes back: the same scripts make it a replica of the new primary.
    for process in first.processes.values():
        process.wait(timeout=10)
    cluster.start(first, "redis")
    cluster.start(first, "sentinel")

    def in_sync() -> bool:
        state = info(first.port)
        return state.get("role") == "slave" and state.get("master_link_status") == "up"

    wait_for("the old primary in sync as a replica", in_sync)
    assert info(first.port)["master_port"] == str(promoted.port)
    assert cluster.run(first, "redis-ready.sh") == 0
    wait_for(
        "the rejoined sentinel names the new primary",
        lambda: cluster.sentinel_master(first)[1] == promoted.port,
    )
    assert write_through_router(cluster, "rejoined")
    assert command(first.port, "SET", "x", "1").startswith(b"-READONLY")
