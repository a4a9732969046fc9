"""Carry a plan out: refuse an unhealthy cluster, change the nodes one at a time (servers
first, then the others), then the servers' manifests; stop at the first node that does
not come back."""

from __future__ import annotations

import datetime
import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from builder.apply.plan import NodePlan
from builder.apply.remote import OnNode
from builder.errors import MeshseedError
from builder.remote_kubectl import kubectl, parsed, ready_condition
from builder.site import Node, Role

log = logging.getLogger("meshseed.apply")

# k3s labels the Node of every etcd member so (k3s-io/k3s pkg/etcd: the member controller
# acts only on Nodes carrying util.ETCDRoleLabelKey, "node-role.kubernetes.io/etcd").
ETCD_ROLE = "node-role.kubernetes.io/etcd"
POLL = 2.0


class NodeFailedError(MeshseedError):
    """A node did not come back; the nodes after it were left untouched."""


@dataclass
class Outcome:
    changed: list[str] = field(default_factory=list)  # nodes, in the order they were changed
    manifests: list[str] = field(default_factory=list)  # manifest names written (on every server)
    failed: dict[str, str] | None = None  # {"node": ..., "reason": ...}
    error: MeshseedError | None = None  # why it stopped, for the command to raise

    def as_json(self) -> dict[str, Any]:
        return {"changed": self.changed, "manifests": self.manifests, "failed": self.failed}


@dataclass(frozen=True)
class Cluster:
    """The nodes as apply reaches them, servers first."""

    plans: Sequence[NodePlan]
    nodes: dict[str, OnNode]
    timeout: float
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
    # Nodes `--only` left out: not logged in to, but the cluster's health still counts
    # them, as the servers' Kubernetes API sees them.
    left_out: tuple[Node, ...] = ()

    @property
    def servers(self) -> list[NodePlan]:
        return [plan for plan in self.plans if plan.wants.node.role is Role.SERVER]

    def watcher_for(self, name: str) -> OnNode | None:
        """A server to run kubectl on while `name` restarts: never `name` itself."""
        return next((self.nodes[plan.name] for plan in self.servers if plan.name != name), None)

    def control_for(self, name: str) -> OnNode:
        if (watcher := self.watcher_for(name)) is None:
            raise MeshseedError("the site has no other server to watch the node from")
        return watcher


def health_problems(cluster: Cluster) -> list[str]:
    """Why the cluster is not healthy: a node without its Node object or not Ready, a
    server that is not an etcd member or whose etcd does not answer (asked only of the
    servers apply logs in to; a left-out server counts by its Node object)."""
    problems = []
    if not cluster.servers:
        return ["no server among the nodes applied to, so nothing can tell the cluster's health"]
    for server in cluster.servers:
        control = cluster.nodes[server.name]
        try:
            answer = kubectl(control.target, "get", "nodes", "-o", "json")
            break
        except MeshseedError as error:
            problems.append(f"{server.name} does not answer kubectl: {error.message}")
    else:
        return problems
    nodes = parsed(answer, "get nodes", control.name)
    try:
        found = {item["metadata"]["name"]: item for item in nodes["items"]}
    except (KeyError, TypeError):
        raise MeshseedError(
            f"{control.name} answered `kubectl get nodes` with something not a NodeList"
        ) from None
    # Every server's own etcd check at once: each is a round trip.
    with ThreadPoolExecutor(max_workers=max(1, len(cluster.servers))) as pool:
        etcd = dict(
            zip(
                [plan.name for plan in cluster.servers],
                pool.map(lambda plan: cluster.nodes[plan.name].etcd_ready(), cluster.servers),
                strict=True,
            )
        )
    for node in [plan.wants.node for plan in cluster.plans] + list(cluster.left_out):
        problems += node_problems(node, found.get(node.name), etcd.get(node.name))
    return problems


def node_problems(node: Node, item: Any, etcd_reason: str | None) -> list[str]:
    """What is wrong with one node as `kubectl get nodes` shows it (`item`, None when it
    has no Node object) and, for a server apply logs in to, as its own etcd answers."""
    if item is None:
        return [f"{node.name} has no Node object"]
    problems = []
    try:
        condition = ready_condition(item) or {}
    except (KeyError, TypeError, AttributeError):
        condition = {"status": "unreadable"}
    if condition.get("status") != "True":
        problems.append(f"{node.name} is NotReady (Ready: {condition.get('status', 'not reported')})")
    if node.role is Role.SERVER:
        if (item["metadata"].get("labels") or {}).get(ETCD_ROLE) != "true":
            problems.append(f"{node.name} is not an etcd member (no {ETCD_ROLE}=true label)")
        if etcd_reason is not None:
            problems.append(f"{node.name}'s etcd is not healthy: {etcd_reason}")
    return problems


def roll_out(cluster: Cluster) -> Outcome:
    """Every node that differs, one at a time, then the manifests; at the first node that
    fails, the outcome says why and nothing after it is touched."""
    outcome = Outcome()
    for plan in cluster.plans:
        if not plan.changes:
            continue
        steps: list[str] = []
        try:
            change_node(cluster, plan, steps)
        except MeshseedError as error:
            rest = [p.name for p in cluster.plans[cluster.plans.index(plan) + 1 :] if p.changes]
            outcome.failed = {"node": plan.name, "reason": error.message, "after": steps[-1] if steps else ""}
            left = f"; left {', '.join(rest)} untouched" if rest else ""
            still = " and cordoned" if "drained" in steps else ""
            what = "did not come back" if "restarted" in steps else "could not be changed"
            outcome.error = NodeFailedError(
                f"{plan.name} {what}: {error.message}; it stays as it is{still}{left}",
                hint=f"see `journalctl -u {plan.wants.unit}` on {plan.name}; apply again once it is fixed",
            )
            return outcome
        outcome.changed.append(plan.name)
    write_manifests(cluster, outcome)
    return outcome


def change_node(cluster: Cluster, plan: NodePlan, steps: list[str]) -> None:
    """Change one node; `steps` records how far it got ("drained", "written", "restarted")."""
    on = cluster.nodes[plan.name]
    if not plan.drains:
        for change in plan.changes:
            on.write(change.wanted)
        if plan.restarts():
            # A changed unit file that nothing restarts for still needs systemd to read it.
            on.restart(plan.restarts())
        cluster.say(f"{plan.name}: wrote {len(plan.changes)} file(s), nothing to restart")
        return
    control = cluster.control_for(plan.name)
    seconds = int(cluster.timeout)
    # drain cordons the node first, then evicts its pods through the eviction API, so
    # that every PodDisruptionBudget holds (it does unless told --disable-eviction;
    # kubernetes.io/docs/tasks/administer-cluster/safely-drain-node); DaemonSet pods
    # stay, as they would come straight back.
    kubectl(
        control.target,
        "drain",
        plan.name,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        f"--timeout={seconds}s",
        timeout=cluster.timeout + 60,
    )
    steps.append("drained")
    cluster.say(f"{plan.name}: cordoned and drained")
    for change in plan.changes:
        on.write(change.wanted)
    steps.append("written")
    since = on.restart(plan.restarts())
    steps.append("restarted")
    restarted = [unit for unit in plan.restarts() if unit != "daemon-reload"]
    cluster.say(f"{plan.name}: wrote {len(plan.changes)} file(s), restarted {', '.join(restarted)}")
    deadline = time.monotonic() + cluster.timeout
    wait_ready(control, plan.name, since, deadline)
    if plan.wants.node.role is Role.SERVER:
        wait_etcd(on, deadline)
    kubectl(control.target, "uncordon", plan.name)
    cluster.say(
        f"{plan.name}: Ready"
        + (", etcd healthy" if plan.wants.node.role is Role.SERVER else "")
        + ", uncordoned"
    )


def _seconds(stamp: str) -> float:
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def wait_ready(control: OnNode, name: str, since: int, deadline: float) -> None:
    """Until the Node reports Ready in a status its kubelet sent after the restart: the
    kubelet posts its status as it starts, and a Ready from before is stale (kubernetes.io/
    docs/concepts/architecture/nodes, "Heartbeats")."""
    seen = "no Ready condition"
    while True:
        node = parsed(
            kubectl(control.target, "get", "node", name, "-o", "json"), f"get node {name}", control.name
        )
        try:
            condition = ready_condition(node) or {}
        except (KeyError, TypeError, AttributeError):
            raise MeshseedError(
                f"{control.name} answered `kubectl get node {name}` with something not a Node"
            ) from None
        status = condition.get("status", "not reported")
        try:
            fresh = _seconds(str(condition.get("lastHeartbeatTime"))) >= since
        except ValueError:
            fresh = False
        if status == "True" and fresh:
            return
        seen = f"Ready: {status}" + ("" if fresh else " (reported before the restart)")
        if time.monotonic() >= deadline:
            raise MeshseedError(f"not Ready after the restart ({seen}, seen from {control.name})")
        time.sleep(POLL)


def wait_etcd(on: OnNode, deadline: float) -> None:
    while (reason := on.etcd_ready()) is not None:
        if time.monotonic() >= deadline:
            raise MeshseedError(f"its etcd member is not healthy: {reason}")
        time.sleep(POLL)


def write_manifests(cluster: Cluster, outcome: Outcome) -> None:
    """Each changed manifest on every server that lacks it, one manifest after the other
    in name order, so that the servers never differ by more than the one being written."""
    names = sorted({change.wanted.path for plan in cluster.servers for change in plan.manifests})
    for path in names:
        for plan in cluster.servers:
            for change in plan.manifests:
                if change.wanted.path == path:
                    cluster.nodes[plan.name].write(change.wanted)
        outcome.manifests.append(path.rsplit("/", 1)[-1])
    if names:
        cluster.say(f"manifests: wrote {', '.join(outcome.manifests)} on every server that lacked them")
