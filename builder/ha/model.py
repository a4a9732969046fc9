"""What losing one node for good (its disk included) does to each workload, Service and
user-facing path.

The model is worst-case: where the manifests leave a pod's node open (a single replica,
replicas nothing keeps apart, a volume bound to whichever node first ran it), it assumes
the pods were on the node that is lost. It counts only what survives at once and what
Kubernetes can move: a pod whose volume is bound to the lost node never starts elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from builder.ha.gaps import KNOWN_GAPS, KnownGap
from builder.ha.paths import PATHS, Status, Step, UserPath
from builder.ha.workloads import Cluster, NodeInfo, Workload
from builder.site import Role

# The default toleration of node.kubernetes.io/unreachable: pods of a lost node are
# evicted, and so rescheduled, this long after the node stops answering.
EVICTION_SECONDS = 300
ETCD = "kube-system/etcd (the k3s servers)"


@dataclass(frozen=True)
class Outcome:
    subject: str
    status: Status
    reason: str
    # Down only because of these known gaps (builder/ha/gaps.py).
    known_gaps: tuple[KnownGap, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.status} (known gap)" if self.known_gaps else str(self.status)


@dataclass(frozen=True)
class NodeLoss:
    """Everything that losing `node` does."""

    node: NodeInfo
    paths: tuple[Outcome, ...]
    workloads: tuple[Outcome, ...]

    @property
    def failures(self) -> tuple[Outcome, ...]:
        """User-facing paths down for a reason that no known gap excuses."""
        return tuple(o for o in self.paths if o.status is Status.DOWN and not o.known_gaps)


def etcd_outcome(nodes: Sequence[NodeInfo], lost: NodeInfo) -> Outcome:
    """etcd is the servers themselves, and needs a majority of them."""
    servers = sum(n.role is Role.SERVER for n in nodes)
    need = servers // 2 + 1
    if lost.role is not Role.SERVER:
        return Outcome(ETCD, Status.FINE, f"all {servers} members keep running")
    left = servers - 1
    if left < need:
        return Outcome(ETCD, Status.DOWN, f"quorum lost: {left} of {servers} members left, {need} needed")
    return Outcome(ETCD, Status.FINE, f"{left} of {servers} members keep a majority ({need} needed)")


Verdict = tuple[Status, str]


def workload_outcome(workload: Workload, lost: str) -> Outcome:
    if not workload.eligible:
        return Outcome(workload.ref, Status.DOWN, "no node fits its pods")
    if lost not in workload.eligible:
        return Outcome(workload.ref, Status.FINE, f"none of its pods can run on {lost}")
    others = [n for n in workload.eligible if n != lost]
    if workload.kind == "DaemonSet":
        verdict: Verdict = (
            (Status.FINE, f"its pods on {len(others)} other node(s) keep running")
            if others
            else (Status.DOWN, f"it runs on {lost} only")
        )
    elif workload.kind in ("Job", "CronJob"):
        verdict = _job(workload, lost, others)
    else:
        verdict = _replicated(workload, lost, others)
    status, reason = verdict
    if status is not Status.FINE and workload.note:
        reason = f"{reason}; {workload.note}"
    return Outcome(workload.ref, status, reason)


def _job(workload: Workload, lost: str, others: list[str]) -> Verdict:
    if workload.shared_volume:
        return Status.DOWN, f"it needs {workload.shared_volume}, bound to one node ({lost})"
    if not others:
        return Status.DOWN, f"no node but {lost} fits it"
    return Status.FINE, f"it runs again on another node ({len(others)} fit)"


def _replicated(workload: Workload, lost: str, others: list[str]) -> Verdict:
    """A Deployment's or StatefulSet's replicas: what survives at once, and what moves."""
    replicas = workload.replicas
    if replicas == 0:
        return Status.FINE, "scaled to zero"
    bound = workload.shared_volume or workload.member_volumes
    # A volume shared by every replica keeps them all on its node; otherwise only a
    # spread keeps the lost node to one of them.
    left = replicas - (1 if workload.spread and not workload.shared_volume else replicas)
    how = f" ({workload.spread})" if workload.spread else ""
    if workload.quorum:
        need = replicas // 2 + 1
        if left < need:
            return Status.DOWN, f"quorum lost: {left} of {replicas} members may be left{how}, {need} needed"
        waits = f"; the member on {lost} waits for its node ({bound})" if workload.member_volumes else ""
        return Status.FINE, f"{left} of {replicas} members keep a majority{how}{waits}"
    if left >= 1:
        return Status.FINE, f"{left} of {replicas} replicas on other nodes keep serving{how}"
    return _moved(workload, lost, others)


def _moved(workload: Workload, lost: str, others: list[str]) -> Verdict:
    """No replica survived: whether Kubernetes can start one elsewhere."""
    bound = workload.shared_volume or workload.member_volumes
    if bound:
        where = "the node that first ran it" if workload.shared_volume else "its member's node"
        return Status.DOWN, f"single copy: {bound} is bound to {where}, possibly {lost}, and lost with it"
    if not others:
        return Status.DOWN, f"no node but {lost} fits it"
    wait = f"evicted after {EVICTION_SECONDS} s"
    return Status.DEGRADED, f"no pod until it is rescheduled on another node ({wait})"


def _gap(step: Step) -> KnownGap | None:
    return next(
        (
            g
            for g in KNOWN_GAPS
            if (g.namespace, g.service) == (step.namespace, step.name) and step.kind == "Service"
        ),
        None,
    )


def step_outcome(cluster: Cluster, step: Step, by_ref: dict[str, Outcome]) -> Outcome:
    subject = f"{step.namespace}/{step.name}"
    found: tuple[Workload, ...]
    if step.kind == "workload":
        workload = cluster.workload(step.namespace, step.name)
        found = (workload,) if workload else ()
        missing = "no such workload"
    else:
        service = cluster.service(step.namespace, step.name)
        found = cluster.selected(service) if service else ()
        missing = "no such Service" if service is None else "its selector matches no workload"
    if not found:
        return Outcome(subject, Status.DOWN, missing)
    # A Service is as good as the best of the workloads it selects.
    best = min((by_ref[w.ref] for w in found), key=lambda o: o.status)
    status = min(best.status, step.at_worst)
    reason = f"{best.subject.split('/', 1)[1]}: {best.reason}"
    if status is not Status.FINE and step.what:
        reason = f"{reason} ({step.what})"
    gap = _gap(step) if status is Status.DOWN else None
    return Outcome(subject, status, reason, (gap,) if gap else ())


def path_outcome(cluster: Cluster, path: UserPath, by_ref: dict[str, Outcome], etcd: Outcome) -> Outcome:
    steps = [step_outcome(cluster, step, by_ref) for step in path.steps]
    # Moving a Service's endpoints off a lost node needs the API server, so etcd's quorum.
    steps.append(etcd)
    worst = max(o.status for o in steps)
    if worst is Status.FINE:
        return Outcome(path.name, Status.FINE, "every step keeps an endpoint")
    bad = [o for o in steps if o.status is worst]
    # Down only because of known gaps: shown as such, and excused by the build.
    known = tuple(g for o in bad for g in o.known_gaps)
    excused = worst is Status.DOWN and all(o.known_gaps for o in bad)
    return Outcome(
        path.name, worst, "; ".join(f"{o.subject}: {o.reason}" for o in bad), known if excused else ()
    )


def lose(cluster: Cluster, node: NodeInfo, paths: Sequence[UserPath] = PATHS) -> NodeLoss:
    etcd = etcd_outcome(cluster.nodes, node)
    workloads = [workload_outcome(w, node.name) for w in cluster.workloads]
    by_ref = {o.subject: o for o in workloads}
    return NodeLoss(
        node,
        tuple(path_outcome(cluster, p, by_ref, etcd) for p in paths),
        (etcd, *workloads),
    )


def every_loss(cluster: Cluster, paths: Sequence[UserPath] = PATHS) -> tuple[NodeLoss, ...]:
    return tuple(lose(cluster, node, paths) for node in cluster.nodes)
