"""The host firewall of the seeds, loaded into the kernel and probed for real.

Three network namespaces stand in for a node and its two networks: `node` has the seed's
interfaces by name (the uplink with the node's public address, `mycelium` with its
overlay address) and listens on every port a node may serve; `public` is a host on the
node's link; `overlay` sends from another cluster node's overlay address and from a
stranger's on the Mycelium network. The ruleset is the seed's, unchanged, loaded with
nft in the node's namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.render.firewall import RULESET
from builder.site import load_site
from tests.conftest import EXAMPLE_SITE
from tests.integration.cli import meshseed
from tests.pinned import write_test_lock
from tests.tools import require, unavailable

# Every TCP port a node may listen on (and 5984, CouchDB's, which no node exposes).
TCP_PORTS = (22, 80, 443, 2379, 2380, 5984, 6443, 9100, 9651, 10250)
UDP_PORTS = (8472, 9651)
STRANGER = "4ff:1:2:3::99"

LISTEN = """
import socket, sys, threading
tcp, udp = [int(p) for p in sys.argv[1].split(",")], [int(p) for p in sys.argv[2].split(",")]
def serve_tcp(port):
    server = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    while True:
        conn, _ = server.accept()
        conn.sendall(b"hello %d" % port)
        conn.close()
def serve_udp(port):
    server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    server.bind(("::", port))
    while True:
        data, peer = server.recvfrom(100)
        server.sendto(data, peer)
for port in tcp:
    threading.Thread(target=serve_tcp, args=(port,), daemon=True).start()
for port in udp:
    threading.Thread(target=serve_udp, args=(port,), daemon=True).start()
print("listening", flush=True)
threading.Event().wait()
"""
# Prints the ports that answered: {"tcp": [...], "udp": [...]}.
PROBE = """
import json, socket, sys, threading
source, target = sys.argv[1], sys.argv[2]
tcp, udp = [int(p) for p in sys.argv[3].split(",")], [int(p) for p in sys.argv[4].split(",")]
family = socket.AF_INET if "." in target else socket.AF_INET6
found = {"tcp": [], "udp": []}
def try_tcp(port):
    with socket.socket(family, socket.SOCK_STREAM) as conn:
        conn.bind((source, 0))
        conn.settimeout(2)
        try:
            conn.connect((target, port))
            if conn.recv(100) == b"hello %d" % port:
                found["tcp"].append(port)
        except OSError:
            pass
def try_udp(port):
    with socket.socket(family, socket.SOCK_DGRAM) as conn:
        conn.bind((source, 0))
        conn.settimeout(2)
        try:
            conn.sendto(b"ping", (target, port))
            if conn.recvfrom(100)[0] == b"ping":
                found["udp"].append(port)
        except OSError:
            pass
threads = [threading.Thread(target=try_tcp, args=(p,)) for p in tcp]
threads += [threading.Thread(target=try_udp, args=(p,)) for p in udp]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({kind: sorted(ports) for kind, ports in found.items()}))
"""


def public_peer(node: dict[str, Any]) -> str:
    """A host on the node's public link."""
    return str(ipaddress.IPv6Interface(node["public_interface"]).network[0x99])


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The example site's build: each node's ruleset, addresses and role."""
    root = tmp_path_factory.mktemp("firewall")
    shutil.copy(EXAMPLE_SITE, root / "site.yaml")
    write_test_lock(root)
    key = root / "master.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    result = meshseed("build", cwd=root, master_key=key)
    assert result.returncode == 0, result.stderr
    nodes = {node["name"]: node for node in json.loads((root / "dist" / "nodes.json").read_text())}
    # With its prefix length, as the uplink carries it.
    for node in load_site(root / "site.yaml").nodes:
        nodes[node.name]["public_interface"] = str(node.public_ipv6)
    for name, node in nodes.items():
        data = yaml.safe_load((root / "dist" / "nodes" / name / "user-data").read_text())
        files = {entry["path"]: entry for entry in data["write_files"]}
        node["ruleset"] = files[RULESET]["content"]
        node["units"] = {path: entry["content"] for path, entry in files.items() if path.endswith(".service")}
    return nodes


def test_every_ruleset_passes_nft_check(seeds: dict[str, Any], tmp_path: Path) -> None:
    nft = require("nft", "nftables")
    for name, node in seeds.items():
        path = tmp_path / f"{name}.nft"
        path.write_text(node["ruleset"])
        result = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"{name}: {result.stderr}"
        # And on an image without /etc/protocols (Debian's netbase), as a minimal one is.
        hidden = f"mount --bind /dev/null /etc/protocols && exec {nft} -c -f {path}"
        result = subprocess.run(
            ["unshare", "--mount", "sh", "-c", hidden], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{name}, without /etc/protocols: {result.stderr}"


def test_mycelium_and_k3s_require_the_firewall(seeds: dict[str, Any]) -> None:
    for name, node in seeds.items():
        mycelium = node["units"]["/etc/systemd/system/mycelium.service"]
        assert "Requires=meshseed-firewall.service" in mycelium, name
        assert "After=network-online.target meshseed-firewall.service" in mycelium, name
        assert (
            f"ExecStart=/usr/sbin/nft -f {RULESET}"
            in node["units"]["/etc/systemd/system/meshseed-firewall.service"]
        )


class Node:
    def __init__(self, suffix: str) -> None:
        self.names = {role: f"msfw-{role}-{suffix}" for role in ("node", "public", "overlay")}
        self.listener: subprocess.Popen[bytes] | None = None

    def run(self, role: str, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.names[role], *(str(a) for a in argv)],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def probe(self, role: str, source: str, target: str) -> dict[str, list[int]]:
        ports = ",".join(map(str, TCP_PORTS)), ",".join(map(str, UDP_PORTS))
        result = self.run(role, sys.executable, "-c", PROBE, source, target, *ports)
        answer: dict[str, list[int]] = json.loads(result.stdout)
        return answer


@contextlib.contextmanager
def namespaces(node: dict[str, Any], peer_overlay: str) -> Iterator[Node]:
    """The node's namespace with its uplink and mycelium interfaces, and the two others."""
    require("ip", "iproute2")
    if os.geteuid() != 0:
        unavailable("network namespaces need root")
    world = Node(str(os.getpid()))
    uplink = "uplink"
    pair = f"fw{os.getpid() % 100000}"
    try:
        for name in world.names.values():
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
        for end, other, role in ((uplink, f"{pair}p", "public"), ("mycelium", f"{pair}o", "overlay")):
            _ip("link", "add", f"{pair}{end[0]}", "type", "veth", "peer", "name", other)
            _ip("link", "set", f"{pair}{end[0]}", "netns", world.names["node"])
            _ip("-n", world.names["node"], "link", "set", f"{pair}{end[0]}", "name", end)
            _ip("-n", world.names["node"], "link", "set", end, "up")
            _ip("link", "set", other, "netns", world.names[role])
            _ip("-n", world.names[role], "link", "set", other, "up")
        node_ns, public_ns, overlay_ns = world.names["node"], world.names["public"], world.names["overlay"]
        _ip("-n", node_ns, "address", "add", node["public_interface"], "dev", uplink, "nodad")
        _ip("-n", node_ns, "address", "add", "192.0.2.11/24", "dev", uplink)
        _ip("-n", public_ns, "address", "add", f"{public_peer(node)}/64", "dev", f"{pair}p", "nodad")
        _ip("-n", public_ns, "address", "add", "192.0.2.99/24", "dev", f"{pair}p")
        _ip("-n", node_ns, "address", "add", f"{node['overlay_address']}/128", "dev", "mycelium", "nodad")
        _ip("-n", node_ns, "route", "add", "400::/7", "dev", "mycelium")
        for address in (peer_overlay, STRANGER):
            _ip("-n", overlay_ns, "address", "add", f"{address}/128", "dev", f"{pair}o", "nodad")
        _ip("-n", overlay_ns, "route", "add", f"{node['overlay_address']}/128", "dev", f"{pair}o")
        yield world
    finally:
        if world.listener is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(world.listener.pid, signal.SIGTERM)
            world.listener.wait(timeout=10)
            if world.listener.stdout is not None:
                world.listener.stdout.close()
        for name in world.names.values():
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


def _listen(world: Node) -> None:
    world.listener = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            world.names["node"],
            sys.executable,
            "-c",
            LISTEN,
            ",".join(map(str, TCP_PORTS)),
            ",".join(map(str, UDP_PORTS)),
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert world.listener.stdout is not None
    assert world.listener.stdout.readline().strip() == b"listening"


@pytest.mark.parametrize("name", ["edx1", "vault"])
def test_each_address_reaches_only_what_it_may(seeds: dict[str, Any], name: str, tmp_path: Path) -> None:
    nft = require("nft", "nftables")
    node = seeds[name]
    peer = next(other for other in seeds if other != name)
    web = [80, 443] if node["role"] == "server" else []
    with namespaces(node, seeds[peer]["overlay_address"]) as world:
        _listen(world)
        public, overlay = node["public_ipv6"], node["overlay_address"]
        # Without the firewall every port answers on both addresses: the probes work.
        # (The veth links may take a moment to come up.)
        everything = {"tcp": sorted(TCP_PORTS), "udp": sorted(UDP_PORTS)}
        deadline = time.monotonic() + 20
        while world.probe("public", public_peer(node), public) != everything and time.monotonic() < deadline:
            time.sleep(0.5)
        assert world.probe("public", public_peer(node), public) == everything
        assert world.probe("overlay", STRANGER, overlay) == everything
        (tmp_path / "ruleset.nft").write_text(node["ruleset"])
        world.run("node", nft, "-f", tmp_path / "ruleset.nft")
        # The public address: SSH, Mycelium's peers (tcp and quic){', the web' if web}.
        assert world.probe("public", public_peer(node), public) == {
            "tcp": sorted([22, 9651, *web]),
            "udp": [9651],
        }
        # Nothing at all over IPv4.
        assert world.probe("public", "192.0.2.99", "192.0.2.11") == {"tcp": [], "udp": []}
        # Another cluster node, over the overlay: k3s, etcd, the kubelet, VXLAN,
        # node-exporter, SSH{, the web}; not Mycelium's peer port, not CouchDB.
        cluster = sorted([22, 2379, 2380, 6443, 9100, 10250, *web])
        assert world.probe("overlay", seeds[peer]["overlay_address"], overlay) == {
            "tcp": cluster,
            "udp": [8472],
        }
        # A stranger on the Mycelium network: SSH{ and the web} only.
        assert world.probe("overlay", STRANGER, overlay) == {"tcp": sorted([22, *web]), "udp": []}
        # Loading it again replaces it (one table, same rules).
        world.run("node", nft, "-f", tmp_path / "ruleset.nft")
        listed = world.run("node", nft, "list", "tables").stdout
        assert listed.count("table inet meshseed") == 1
