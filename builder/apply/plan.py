"""The plan: per node, which of the files meshseed owns differ from dist/ (by sha256 and
mode), which units that restarts, and whether k3s is upgraded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builder.apply.desired import CHAIN, K3S_BINARY, NodeWants, Wanted
from builder.apply.remote import Found, OnNode
from builder.apply.versions import K3sVersion, check_step, parse_version
from builder.errors import bad_input


@dataclass(frozen=True)
class Change:
    wanted: Wanted
    action: str  # "create", "update" or "mode"

    def as_json(self) -> dict[str, Any]:
        return {"path": self.wanted.path, "action": self.action, "mode": f"{self.wanted.mode:04o}"}


@dataclass(frozen=True)
class NodePlan:
    wants: NodeWants
    changes: tuple[Change, ...]  # node configuration, k3s and its images
    manifests: tuple[Change, ...]  # in k3s's manifests directory, servers only
    running: K3sVersion
    pinned: K3sVersion

    @property
    def name(self) -> str:
        return self.wants.node.name

    @property
    def upgrade(self) -> bool:
        return self.running != self.pinned

    def restarts(self) -> tuple[str, ...]:
        """The units to restart, in the order the seed starts them; "daemon-reload" first
        when a unit file changed. k3s always restarts last when anything does: its kubelet
        then reports the node's status afresh, which is what `apply` waits for (unchanged,
        the kubelet repeats it only every few minutes), and k3s runs on the network the
        firewall and Mycelium give it."""
        wanted = {unit for change in self.changes for unit in change.wanted.restarts}
        if wanted - {"daemon-reload"}:
            wanted.add(self.wants.unit)
        order = ("daemon-reload", *CHAIN, self.wants.unit)
        return tuple(unit for unit in order if unit in wanted)

    @property
    def drains(self) -> bool:
        """A restart takes the node's k3s (or its network) down for a while."""
        return any(unit != "daemon-reload" for unit in self.restarts())

    def as_json(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "role": self.wants.node.role.value,
            "changes": [change.as_json() for change in self.changes],
            "manifests": [change.as_json() for change in self.manifests],
            "restart": [unit for unit in self.restarts() if unit != "daemon-reload"],
            "k3s": {"running": str(self.running), "pinned": str(self.pinned), "upgrade": self.upgrade},
        }


def differences(wanted: tuple[Wanted, ...], found: list[Found]) -> tuple[Change, ...]:
    changes = []
    for want, have in zip(wanted, found, strict=True):
        if have.sha256 is None:
            changes.append(Change(want, "create"))
        elif have.sha256 != want.sha256:
            changes.append(Change(want, "update"))
        elif have.mode != want.mode:
            changes.append(Change(want, "mode"))
    return tuple(changes)


def plan_node(on: OnNode, wants: NodeWants, pinned: K3sVersion) -> NodePlan:
    """Read the node's files and k3s version; refuse a k3s step k3s does not support."""
    found = on.inspect([w.path for w in (*wants.files, *wants.manifests)])
    changes = differences(wants.files, found[: len(wants.files)])
    manifests = differences(wants.manifests, found[len(wants.files) :])
    running = parse_version(on.k3s_version(), f"{on.name}: k3s --version")
    if running != pinned:
        check_step(on.name, running, pinned)
    for change in changes:
        if change.wanted.data is None and change.wanted.source is None:
            raise bad_input(
                f"{on.name} needs {change.wanted.path} (sha256 {change.wanted.sha256}), "
                "which dist/ does not hold",
                hint="build with --airgap, so that dist/ holds the pinned k3s binary to upload",
            )
    return NodePlan(wants, changes, manifests, running, pinned)


def pinned_binary(wants: NodeWants) -> Wanted:
    return next(w for w in wants.files if w.path == K3S_BINARY)
