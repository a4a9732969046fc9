"""`meshseed replace NODE`: take a lost node out of the running cluster, so that a new
machine flashed with the node's rebuilt seed joins as that node.

The node keeps its name, and with it every identity derived from the master key (its
Mycelium key and overlay address, its SSH host key): only the cluster's record of the old
machine has to go. Through a healthy server, over SSH with that server's derived host key
pinned (as `meshseed backup pull` reaches the backup node), this deletes the lost node's
Kubernetes Node object and its node password Secret, and records in site.yaml that the
cluster is bootstrapped, so that the rebuilt seeds all join the running cluster.

Deleting the Node object is also what removes a server's etcd member: k3s's
managed-etcd-controller registers an OnRemove handler on Nodes (a finalizer), which calls
the etcd member removal for a node labelled as an etcd member before the object goes
(k3s-io/k3s pkg/etcd/member_controller.go, `onRemove` -> `RemovePeer`; a force delete
that skips the finalizer leaves the member behind, as the k3s maintainers note in
discussion #14894). So the delete is never forced, and waits for the finalizer: once the
Node is gone, so is the member.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from builder.det.files import write_atomically
from builder.errors import MeshseedError, bad_input
from builder.remote_kubectl import kubectl, ready_status
from builder.render.node import joined_server
from builder.secrets import SecretDeriver
from builder.site import Node, Role, Site
from builder.site.load import parse_site
from builder.ssh_login import Login, login_to
from builder.tools.ssh import SshTarget
from builder.typed_yaml.decode import did_you_mean

log = logging.getLogger("meshseed.replace")

# How long the delete may wait for k3s to remove the etcd member (its finalizer).
DELETE_TIMEOUT = "5m"
BOOTSTRAPPED_LINES = (
    "# The cluster exists: every seed joins it (written by `meshseed replace`).\nbootstrapped: true\n"
)


@dataclass(frozen=True)
class Removal:
    node: str
    through: str
    registered: bool  # the cluster still had a Node object for it


def node_named(site: Site, name: str) -> Node:
    for node in site.nodes:
        if node.name == name:
            return node
    raise bad_input(
        f"{site.source}: no node named {name!r}",
        hint=did_you_mean(name, [node.name for node in site.nodes]) or "`meshseed nodes` lists them",
    )


def healthy_server(site: Site, lost: Node, through: str | None) -> Node:
    """The server to work through: the one named, else the first server that is not lost."""
    if through is None:
        return next(server for server in site.servers if server.name != lost.name)
    chosen = node_named(site, through)
    if chosen.name == lost.name:
        raise bad_input(
            f"refusing to remove {lost.name} through itself: a lost node cannot remove itself",
            hint="name another server with --through",
        )
    if chosen.role is not Role.SERVER:
        raise bad_input(f"{chosen.name} is a {chosen.role} node; only a server can remove a node")
    return chosen


def remove_from_cluster(target: SshTarget, lost: Node, through: Node) -> Removal:
    """Delete the lost node's Node object (and with it a server's etcd member) and its node
    password Secret, so that a new machine may register under the same name."""
    name = lost.name
    state = ready_status(
        kubectl(target, "get", "node", name, "-o", "json", "--ignore-not-found"), name, through.name
    )
    if state == "True":
        raise MeshseedError(
            f"{name} is Ready in the cluster (seen from {through.name}): replace takes out a node that is "
            "gone, not one that runs",
            hint=f"power {name} off (or stop k3s on it) and wait until it is NotReady, then replace it",
        )
    if state is not None:
        log.info("deleting node %s (Ready: %s) through %s", name, state, through.name)
        # Waits for k3s's finalizer, which removes a server's etcd member.
        kubectl(target, "delete", "node", name, "--wait=true", f"--timeout={DELETE_TIMEOUT}")
    # k3s cleans the node password up with the Node (docs.k3s.io, Architecture: "How Agent
    # Node Registration Works"); a Node deleted earlier by force may have left it behind,
    # and a new machine, with a password of its own, would be refused under the old name.
    kubectl(
        target, "-n", "kube-system", "delete", "secret", f"{name}.node-password.k3s", "--ignore-not-found"
    )
    if kubectl(target, "get", "node", name, "-o", "name", "--ignore-not-found").strip():
        raise MeshseedError(
            f"{name}'s Node object is still there after its deletion, seen from {through.name}"
        )
    return Removal(name, through.name, registered=state is not None)


def take_out(site: Site, name: str, through: str | None, login: Login, deriver: SecretDeriver) -> Removal:
    """Remove the lost node `name` from the cluster through a healthy server, then mark the
    site bootstrapped: a cluster that had a node to lose exists."""
    lost = node_named(site, name)
    server = healthy_server(site, lost, through)
    with login_to(deriver, server, login) as target:
        removal = remove_from_cluster(target, lost, server)
    mark_bootstrapped(site.source)
    return removal


def mark_bootstrapped(path: Path) -> bool:
    """Set `bootstrapped: true` in the site file, touching nothing else in it (comments and
    layout stay); False when it already says so."""
    text = path.read_text(encoding="utf-8")
    if parse_site(text, path).bootstrapped:
        return False
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    existing = None
    if isinstance(root, yaml.MappingNode):
        existing = next((value for key, value in root.value if key.value == "bootstrapped"), None)
    if existing is not None:
        marked = text[: existing.start_mark.index] + "true" + text[existing.end_mark.index :]
    else:
        marked = text + ("" if text.endswith("\n") else "\n") + BOOTSTRAPPED_LINES
    try:
        done = parse_site(marked, path).bootstrapped
    except MeshseedError:
        done = False
    if not done:
        raise MeshseedError(
            f"{path}: could not set `bootstrapped: true` in it; left it as it was",
            hint="add the line `bootstrapped: true` at its top level by hand, then build",
        )
    write_atomically(path, marked.encode(), mode=path.stat().st_mode & 0o7777)
    return True


def next_steps(site: Site, removal: Removal, dist: Path, *, disks: bool) -> str:
    """What the operator does next, with the file to flash and the server it will join."""
    node = node_named(site, removal.node)
    seed = dist / "nodes" / node.name
    image = (
        f"write {seed / 'disk.raw.zst'} to the new machine's disk"
        if disks
        else f"boot the new machine from a stock cloud image with {seed / 'seed.iso'} attached"
        + (f" (and {seed / 'payload.img'})" if (seed / "payload.img").exists() else "")
    )
    # The site is marked bootstrapped by now, so every node joins a server.
    joins = joined_server(site, node, site.servers[0])
    assert joins is not None
    where = "Node object and etcd member" if node.role is Role.SERVER else "Node object"
    gone = (
        f"removed {node.name}'s {where} through {removal.through}"
        if removal.registered
        else (f"{node.name} had no Node object left in the cluster (seen from {removal.through})")
    )
    return (
        f"{gone}; {site.source} says bootstrapped: true\n"
        f"next: {image}; it joins {joins.name} as {node.name}, with the same name, addresses and host key\n"
        f"then: `kubectl get node {node.name}` until Ready"
    )
