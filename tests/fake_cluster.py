"""A stand-in k3s cluster for the tests of the commands that work on running nodes over
SSH (`meshseed replace`, `meshseed apply`): real sshd instances on 127.0.0.1, one per
node (tests/sshd_nodes.py), with recording stand-ins for k3s (its kubectl), systemctl,
sudo and mv first on their sessions' PATH.

They share one state folder: the cluster's Node objects (`nodes/<name>.json`), every call
made (`calls.jsonl`, with the node it ran on), and each node's files under
`roots/<name>/` (what `meshseed apply --node-root` points at). A test makes a node fail by
a marker file: `never-ready/<name>` (its Node stays NotReady once restarted),
`etcd-unhealthy/<name>` (its API server's etcd check fails).
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.sshd_nodes import PUBLIC_ADDRESSES, client_config, running_sshd, user_key

ETCD_ROLE = "node-role.kubernetes.io/etcd"
SERVERS = ("edx1", "edx2", "edx3")

_RECORD = """
import hashlib, json, os, stat, sys
STATE = os.environ["FAKE_CLUSTER"]
ME = os.environ.get("FAKE_NODE", "")
def record(argv, **extra):
    with open(os.path.join(STATE, "calls.jsonl"), "a") as log:
        log.write(json.dumps({"node": ME, "argv": argv, **extra}) + "\\n")
"""

FAKE_SUDO = """#!/bin/sh
[ "$1" = -n ] && shift
exec "$@"
"""

FAKE_K3S = (
    "#!/usr/bin/python3\n"
    + _RECORD
    + r"""
import time
args = sys.argv[1:]
record(["k3s", *args])
if args[:1] != ["kubectl"]:
    sys.exit("fake k3s: only kubectl")
args = args[1:]
if args[:2] == ["-n", "kube-system"]:
    args = args[2:]
def node_file(name):
    return os.path.join(STATE, "nodes", name + ".json")
def load(name):
    with open(node_file(name)) as f:
        return json.load(f)
def save(node):
    with open(node_file(node["metadata"]["name"]), "w") as f:
        json.dump(node, f)
if args[:2] == ["get", "--raw"]:
    if os.path.exists(os.path.join(STATE, "etcd-unhealthy", ME)):
        sys.exit("[-]etcd failed: reason withheld")
    print("ok")
elif args[:3] == ["get", "nodes", "-o"]:
    names = sorted(n[:-5] for n in os.listdir(os.path.join(STATE, "nodes")))
    json.dump({"kind": "NodeList", "items": [load(n) for n in names]}, sys.stdout)
elif args[:2] == ["get", "node"]:
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
elif args[:1] in (["cordon"], ["uncordon"]):
    node = load(args[1])
    node.setdefault("spec", {})["unschedulable"] = args[0] == "cordon"
    save(node)
elif args[:1] == ["drain"]:
    node = load(args[1])
    node.setdefault("spec", {})["unschedulable"] = True
    save(node)
else:
    sys.exit("fake k3s: unexpected kubectl " + " ".join(args))
"""
)

# A restart of any unit brings the node's k3s back: Ready, in a fresh status, unless the
# test said it never will be.
FAKE_SYSTEMCTL = (
    "#!/usr/bin/python3\n"
    + _RECORD
    + r"""
import time
args = sys.argv[1:]
record(["systemctl", *args])
path = os.path.join(STATE, "nodes", ME + ".json")
if args[:1] == ["restart"] and os.path.exists(path):
    with open(path) as f:
        node = json.load(f)
    ready = "False" if os.path.exists(os.path.join(STATE, "never-ready", ME)) else "True"
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    node["status"]["conditions"] = [{"type": "Ready", "status": ready, "lastHeartbeatTime": now}]
    with open(path, "w") as f:
        json.dump(node, f)
"""
)

# Records what is renamed onto what, with the mode and sha256 the file has as it gets its
# final name.
FAKE_MV = (
    "#!/usr/bin/python3\n"
    + _RECORD
    + r"""
args = sys.argv[1:]
source = args[-2]
with open(source, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
record(["mv", *args], mode="%o" % stat.S_IMODE(os.stat(source).st_mode), sha256=digest)
os.execv("/bin/mv", ["mv", *args])
"""
)


def _program(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@dataclass
class Call:
    node: str
    argv: list[str]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeCluster:
    state: Path
    client_config: Path  # sends each node's public address to its sshd, with the login key
    sshd_work: dict[str, Path]
    ports: dict[str, int]  # each node's sshd, by the node's public address
    login_key: Path

    def reset(self) -> None:
        """An empty cluster: no Node objects, no calls, empty node roots, no markers."""
        for name in ("nodes", "roots", "never-ready", "etcd-unhealthy"):
            shutil.rmtree(self.state / name, ignore_errors=True)
            (self.state / name).mkdir()
        (self.state / "calls.jsonl").unlink(missing_ok=True)

    def root(self, node: str) -> Path:
        return self.state / "roots" / node

    def add_node(self, name: str, ready: str = "True", *, etcd: bool | None = None) -> None:
        labels = {ETCD_ROLE: "true"} if (name in SERVERS if etcd is None else etcd) else {}
        node = {
            "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {},
            "status": {
                "conditions": [
                    {"type": "Ready", "status": ready, "lastHeartbeatTime": "2026-01-01T00:00:00Z"}
                ]
            },
        }
        (self.state / "nodes" / f"{name}.json").write_text(json.dumps(node))

    def node(self, name: str) -> dict[str, Any]:
        return dict(json.loads((self.state / "nodes" / f"{name}.json").read_text()))

    def nodes(self) -> set[str]:
        return {path.stem for path in (self.state / "nodes").glob("*.json")}

    def mark(self, marker: str, node: str) -> None:
        (self.state / marker / node).touch()

    def all_calls(self) -> list[Call]:
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        calls = []
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            calls.append(Call(entry.pop("node"), entry.pop("argv"), entry))
        return calls

    def kubectl_calls(self) -> list[list[str]]:
        """k3s's calls, without the program's name."""
        return [call.argv[1:] for call in self.all_calls() if call.argv[0] == "k3s"]

    def changes(self) -> list[list[str]]:
        """The kubectl calls that change the cluster: every one but `get`."""
        return [call for call in self.kubectl_calls() if "get" not in call]


@contextlib.contextmanager
def fake_cluster(work: Path, nodes: Sequence[str]) -> Iterator[FakeCluster]:
    """One sshd per node, all sharing the stand-in programs and the cluster's state."""
    bin_dir = work / "bin"
    bin_dir.mkdir(parents=True)
    state = work / "cluster"
    state.mkdir()
    _program(bin_dir / "sudo", FAKE_SUDO)
    _program(bin_dir / "k3s", FAKE_K3S)
    _program(bin_dir / "systemctl", FAKE_SYSTEMCTL)
    _program(bin_dir / "mv", FAKE_MV)
    # A kubectl of its own would be a mistake: meshseed uses k3s's, which every server has.
    _program(bin_dir / "kubectl", "#!/bin/sh\necho 'fake kubectl: use k3s kubectl' >&2\nexit 99\n")
    key = user_key(work / "client")
    ports = {}
    with contextlib.ExitStack() as stack:
        works = {}
        for name in nodes:
            environment = {"PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "FAKE_CLUSTER": str(state)}
            server = stack.enter_context(
                running_sshd(work / f"sshd-{name}", name, key, {**environment, "FAKE_NODE": name})
            )
            ports[PUBLIC_ADDRESSES[name]] = server.port
            works[name] = server.work
        config = client_config(work / "client" / "ssh_config", ports, key)
        cluster = FakeCluster(state, config, works, ports, key)
        cluster.reset()
        yield cluster
