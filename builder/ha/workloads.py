"""The rendered manifests as the node-loss model sees them: nodes, workloads, Services.

Everything is read generically from the documents, so that a datastore replaced by a
StatefulSet (or a Service that selects other pods) is modelled without a change here:
replicas, required and preferred pod anti-affinity, nodeSelector and node affinity,
taints and tolerations (through `placement.fits_shape`), volumes bound to a node, and
the `meshseed/quorum: majority` label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from builder.cluster.placement import NodeShape, fits_shape, node_shape, pod_spec
from builder.site import Role

HOSTNAME = "kubernetes.io/hostname"
QUORUM_LABEL = "meshseed/quorum"
# A note a workload carries into the model's reason, e.g. what rebuilds it after a loss.
NOTE_ANNOTATION = "meshseed/node-loss"
# Storage classes whose volumes are replicated across nodes, so a pod may start on any
# node with its data. k3s's default, local-path, binds a volume to the node that first
# used it; meshseed ships no replicating class yet.
REPLICATED_STORAGE_CLASSES: frozenset[str] = frozenset()
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")


@dataclass(frozen=True)
class NodeInfo:
    name: str
    role: Role

    @property
    def shape(self) -> NodeShape:
        shape = node_shape(self.role)
        return NodeShape({**shape.labels, HOSTNAME: self.name}, shape.taints)


@dataclass(frozen=True)
class Workload:
    kind: str
    namespace: str
    name: str
    pod_labels: Mapping[str, str]
    replicas: int
    # Nodes a pod may be scheduled on (selectors, affinity, taints, bound volumes).
    eligible: tuple[str, ...]
    # Why a pod cannot move: a volume shared by every replica that stays on one node
    # (a Deployment's PVC), or each member's own (a StatefulSet's claim templates).
    shared_volume: str | None
    member_volumes: str | None
    # Replicas land on distinct nodes: required anti-affinity, or preferred when there
    # are enough nodes (the scheduler honours it when it can).
    spread: str | None
    quorum: bool
    note: str | None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.kind}/{self.name}"


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    selector: Mapping[str, str]


@dataclass(frozen=True)
class Cluster:
    nodes: tuple[NodeInfo, ...]
    workloads: tuple[Workload, ...]
    services: tuple[Service, ...]

    def service(self, namespace: str, name: str) -> Service | None:
        return next((s for s in self.services if (s.namespace, s.name) == (namespace, name)), None)

    def workload(self, namespace: str, name: str) -> Workload | None:
        return next((w for w in self.workloads if (w.namespace, w.name) == (namespace, name)), None)

    def selected(self, service: Service) -> tuple[Workload, ...]:
        """The workloads whose pods the Service's selector matches."""
        if not service.selector:
            return ()
        return tuple(
            w
            for w in self.workloads
            if w.namespace == service.namespace
            and all(w.pod_labels.get(k) == v for k, v in service.selector.items())
        )


def _metadata(document: Mapping[str, Any]) -> Mapping[str, Any]:
    found = document.get("metadata") or {}
    return found if isinstance(found, Mapping) else {}


def _template(document: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = document.get("spec") or {}
    if document.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template") or {}
    return template if isinstance(template, Mapping) else {}


def _node_bound_claims(
    documents: Iterable[Mapping[str, Any]], nodes: tuple[NodeInfo, ...]
) -> dict[tuple[str, str], tuple[str, ...] | None]:
    """(namespace, claim) -> the nodes its volume can be on (a static PV's node affinity),
    or None when it binds to whichever node first uses it (local-path). Claims of a
    replicating storage class are left out: they follow the pod."""
    pv_nodes: dict[str, tuple[str, ...]] = {}
    for document in documents:
        if document.get("kind") != "PersistentVolume":
            continue
        spec = document.get("spec") or {}
        affinity = (spec.get("nodeAffinity") or {}).get("required")
        if affinity and spec.get("storageClassName"):
            as_pod = {
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": affinity}}
            }
            fitting = tuple(n.name for n in nodes if fits_shape(as_pod, NodeShape(n.shape.labels, ())))
            pv_nodes[spec["storageClassName"]] = tuple(
                sorted({*pv_nodes.get(spec["storageClassName"], ()), *fitting})
            )
    claims: dict[tuple[str, str], tuple[str, ...] | None] = {}
    for document in documents:
        if document.get("kind") != "PersistentVolumeClaim":
            continue
        meta = _metadata(document)
        storage_class = (document.get("spec") or {}).get("storageClassName")
        if storage_class in REPLICATED_STORAGE_CLASSES:
            continue
        bound = pv_nodes.get(storage_class) if isinstance(storage_class, str) else None
        claims[(str(meta.get("namespace", "default")), str(meta["name"]))] = bound
    return claims


def _anti_affinity(spec: Mapping[str, Any], labels: Mapping[str, str]) -> tuple[bool, bool]:
    """(required, preferred): whether pods of this template repel each other per node."""

    def own(term: Mapping[str, Any]) -> bool:
        match = (term.get("labelSelector") or {}).get("matchLabels") or {}
        expressions = (term.get("labelSelector") or {}).get("matchExpressions")
        return (
            term.get("topologyKey") == HOSTNAME
            and not expressions
            and bool(match)
            and all(labels.get(k) == v for k, v in match.items())
        )

    anti = (spec.get("affinity") or {}).get("podAntiAffinity") or {}
    required = any(own(t) for t in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or [])
    preferred = any(
        own(t.get("podAffinityTerm") or {})
        for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []
    )
    spread = any(
        c.get("topologyKey") == HOSTNAME
        and c.get("maxSkew") == 1
        and c.get("whenUnsatisfiable") == "DoNotSchedule"
        for c in spec.get("topologySpreadConstraints") or []
    )
    return required or spread, preferred


def _workload(
    document: Mapping[str, Any],
    nodes: tuple[NodeInfo, ...],
    claims: Mapping[tuple[str, str], tuple[str, ...] | None],
) -> Workload | None:
    kind = str(document.get("kind"))
    spec = pod_spec(document)
    if kind not in WORKLOAD_KINDS or spec is None:
        return None
    meta = _metadata(document)
    namespace = str(meta.get("namespace", "default"))
    template_meta = _template(document).get("metadata") or {}
    pod_labels = dict(template_meta.get("labels") or {})
    eligible = [n.name for n in nodes if fits_shape(spec, n.shape)]
    shared = None
    for volume in spec.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim is not None and (namespace, claim) in claims:
            bound = claims[(namespace, claim)]
            if bound is not None:
                eligible = [n for n in eligible if n in bound]
            shared = f"PersistentVolumeClaim {claim}"
        elif "hostPath" in volume and kind != "DaemonSet":
            shared = f"hostPath volume {volume.get('name')}"
    members = None
    for template in (document.get("spec") or {}).get("volumeClaimTemplates") or []:
        if (template.get("spec") or {}).get("storageClassName") not in REPLICATED_STORAGE_CLASSES:
            members = f"volumeClaimTemplate {_metadata(template).get('name')}"
    required, preferred = _anti_affinity(spec, pod_labels)
    replicas = (
        int((document.get("spec") or {}).get("replicas", 1)) if kind in ("Deployment", "StatefulSet") else 1
    )
    spread = None
    if required:
        spread = "required anti-affinity"
    elif preferred and len(eligible) >= replicas:
        spread = "preferred anti-affinity"
    labels = {**(meta.get("labels") or {}), **pod_labels}
    annotations = {**(meta.get("annotations") or {}), **(template_meta.get("annotations") or {})}
    return Workload(
        kind=kind,
        namespace=namespace,
        name=str(meta.get("name")),
        pod_labels=pod_labels,
        replicas=replicas,
        eligible=tuple(eligible),
        shared_volume=shared,
        member_volumes=members,
        spread=spread,
        quorum=labels.get(QUORUM_LABEL) == "majority",
        note=annotations.get(NOTE_ANNOTATION),
    )


def read_cluster(documents: Iterable[Mapping[str, Any]], nodes: Iterable[NodeInfo]) -> Cluster:
    docs = [d for d in documents if isinstance(d, Mapping)]
    node_list = tuple(nodes)
    claims = _node_bound_claims(docs, node_list)
    workloads = tuple(w for d in docs if (w := _workload(d, node_list, claims)) is not None)
    services = tuple(
        Service(
            str(_metadata(d).get("namespace", "default")),
            str(_metadata(d)["name"]),
            dict((d.get("spec") or {}).get("selector") or {}),
        )
        for d in docs
        if d.get("kind") == "Service"
    )
    return Cluster(node_list, workloads, services)
