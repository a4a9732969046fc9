"""A real sshd on 127.0.0.1 standing in for a healthy server of the example site, with a
recording stand-in for k3s's kubectl (and for sudo) first on its users' PATH.

The stand-in keeps the cluster's Node objects as files, `nodes/<name>.json`, and appends
every command it is given to `calls.jsonl`, so a test sees what was asked and what is left.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.secrets import SecretDeriver
from builder.ssh_host_keys import host_key
from tests.backup.sshd_fixtures import keygen
from tests.conftest import TEST_MASTER_KEY
from tests.integration.oci_fixtures import free_port
from tests.tools import require, unavailable

# The example site's second server, which `meshseed replace edx1` works through by default.
THROUGH = "edx2"
THROUGH_ADDRESS = "2001:db8:20::12"

FAKE_SUDO = """#!/bin/sh
[ "$1" = -n ] && shift
exec "$@"
"""

FAKE_K3S = """#!/usr/bin/python3
import json, os, sys
state = os.environ["FAKE_CLUSTER"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] != ["kubectl"]:
    sys.exit("fake k3s: only kubectl")
args = args[1:]
if args[:2] == ["-n", "kube-system"]:
    args = args[2:]
def node_file(name):
    return os.path.join(state, "nodes", name + ".json")
if args[:2] == ["get", "node"]:
    name = args[2]
    if os.path.exists(node_file(name)):
        if "json" in args:
            sys.stdout.write(open(node_file(name)).read())
        else:
            print("node/" + name)
    elif "--ignore-not-found" not in args:
        sys.exit('Error from server (NotFound): nodes "%s" not found' % name)
elif args[:2] == ["delete", "node"]:
    name = args[2]
    if not os.path.exists(node_file(name)):
        sys.exit('Error from server (NotFound): nodes "%s" not found' % name)
    os.remove(node_file(name))
    print('node "%s" deleted' % name)
elif args[:2] == ["delete", "secret"]:
    pass
else:
    sys.exit("fake k3s: unexpected kubectl " + " ".join(args))
"""


@dataclass
class FakeServer:
    client_config: Path  # sends THROUGH_ADDRESS to this sshd, with the user key
    state: Path
    host_key: Path

    def add_node(self, name: str, ready: str) -> None:
        node = {
            "kind": "Node",
            "metadata": {"name": name},
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }
        (self.state / "nodes" / f"{name}.json").write_text(json.dumps(node))

    def nodes(self) -> set[str]:
        return {path.stem for path in (self.state / "nodes").glob("*.json")}

    def calls(self) -> list[list[str]]:
        log = self.state / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def changes(self) -> list[list[str]]:
        """The calls that change the cluster: every kubectl but `get`."""
        return [call for call in self.calls() if "get" not in call]


def _write_program(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[FakeServer]:
    program = require("sshd", "openssh-server")
    if os.geteuid() != 0:
        unavailable("sshd needs root to switch to the login user")
    work = tmp_path / "sshd"
    (work / "bin").mkdir(parents=True)
    state = tmp_path / "cluster"
    (state / "nodes").mkdir(parents=True)
    _write_program(work / "bin" / "sudo", FAKE_SUDO)
    _write_program(work / "bin" / "k3s", FAKE_K3S)
    # A kubectl of its own would be a mistake: replace uses k3s's, which every server has.
    _write_program(work / "bin" / "kubectl", "#!/bin/sh\necho 'fake kubectl: use k3s kubectl' >&2\nexit 99\n")
    (work / "host_key").write_text(
        host_key(SecretDeriver(TEST_MASTER_KEY, "campus"), THROUGH).private_openssh
    )
    (work / "host_key").chmod(0o600)
    keygen(work / "user_key")
    (work / "authorized_keys").write_text((work / "user_key.pub").read_text())
    port = free_port()
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPidFile {work / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\n"
        # The stand-ins first on the session's PATH, and where they keep the cluster.
        f"SetEnv PATH={work / 'bin'}:/usr/local/bin:/usr/bin:/bin FAKE_CLUSTER={state}\n"
    )
    (work / "known_hosts").write_text("")
    # The operator's own settings accept any host key: replace must not rely on them.
    (work / "ssh_config").write_text(
        f"Host {THROUGH_ADDRESS}\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {work / 'user_key'}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {work / 'known_hosts'}\n  StrictHostKeyChecking no\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with (work / "sshd.log").open("wb") as log:
        process = subprocess.Popen(
            [program, "-D", "-e", "-f", str(work / "sshd_config")], stdout=log, stderr=log
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    try:
        yield FakeServer(work / "ssh_config", state, work / "host_key")
    finally:
        process.kill()
        process.wait()


def cluster_of_the_example_site(
    server: FakeServer, *, lost: str = "edx1", lost_ready: str = "Unknown"
) -> None:
    for name in ("edx1", "edx2", "edx3", "vault"):
        server.add_node(name, lost_ready if name == lost else "True")
