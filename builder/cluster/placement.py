"""Which node roles a pod can be scheduled on, as the scheduler decides it.

Each role's nodes carry the labels and taints node setup gives them (render/node.py:
`meshseed/role=<role>`, the backup node's NoSchedule taint) and those k3s adds to its
servers. A pod fits a role when its nodeSelector and required node affinity match those
labels and its tolerations cover those taints. The air-gap bundles use this to hold, for
each role, exactly the images of the workloads that can run there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from builder.site import Role

ROLE_LABEL = "meshseed/role"
# k3s labels its servers so; workloads pinned to servers select it (k8s.SERVER_SELECTOR).
CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
# Kinds whose pods run the images the bundles must carry, and where their pod spec is.
_POD_SPECS = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass(frozen=True)
class Taint:
    key: str
    value: str
    effect: str


@dataclass(frozen=True)
class NodeShape:
    """What the scheduler sees of every node of one role."""

    labels: Mapping[str, str]
    taints: tuple[Taint, ...]


def backup_taint() -> Taint:
    return Taint(ROLE_LABEL, Role.BACKUP.value, "NoSchedule")


def node_shape(role: Role) -> NodeShape:
    labels = {ROLE_LABEL: role.value}
    if role is Role.SERVER:
        labels[CONTROL_PLANE_LABEL] = "true"
    return NodeShape(labels, (backup_taint(),) if role is Role.BACKUP else ())


def pod_spec(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec a workload document creates pods from; None for other kinds."""
    path = _POD_SPECS.get(str(document.get("kind")))
    if path is None:
        return None
    found: Any = document
    for key in path:
        found = found.get(key, {})
    spec = found.get("spec")
    return spec if isinstance(spec, Mapping) else None


def _expression_holds(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, operator = expression["key"], expression["operator"]
    values = expression.get("values") or []
    if operator == "In":
        return key in labels and labels[key] in values
    if operator == "NotIn":
        return key not in labels or labels[key] not in values
    if operator == "Exists":
        return key in labels
    if operator == "DoesNotExist":
        return key not in labels
    raise ValueError(f"node affinity operator {operator!r} is not modelled")


def _affinity_holds(spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    required = (
        spec.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution")
    )
    if not required:
        return True
    # The terms are ORed, each term's expressions ANDed.
    return any(
        all(_expression_holds(e, labels) for e in term.get("matchExpressions", []))
        for term in required["nodeSelectorTerms"]
    )


def _tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Taint) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") not in (None, "", taint.effect):
            continue
        if toleration.get("operator", "Equal") == "Exists":
            if toleration.get("key") in (None, "", taint.key):
                return True
        elif toleration.get("key") == taint.key and toleration.get("value", "") == taint.value:
            return True
    return False


def fits(spec: Mapping[str, Any], role: Role) -> bool:
    """Whether the scheduler may place a pod with this spec on a node of `role`."""
    return fits_shape(spec, node_shape(role))


def fits_shape(spec: Mapping[str, Any], shape: NodeShape) -> bool:
    """Whether the scheduler may place a pod with this spec on a node that looks so (the
    node-loss model adds each node's `kubernetes.io/hostname` to its role's labels)."""
    selector = spec.get("nodeSelector") or {}
    if any(shape.labels.get(key) != value for key, value in selector.items()):
        return False
    if not _affinity_holds(spec, shape.labels):
        return False
    return all(_tolerates(spec.get("tolerations") or [], taint) for taint in shape.taints)


def images_by_role(documents: Iterable[Mapping[str, Any]], roles: Iterable[Role]) -> dict[Role, set[str]]:
    """Role -> every image (as the manifests name it) of a pod that can run there."""
    wanted = tuple(roles)
    found: dict[Role, set[str]] = {role: set() for role in wanted}
    for document in documents:
        spec = pod_spec(document)
        if spec is None:
            continue
        images = {c["image"] for key in ("initContainers", "containers") for c in spec.get(key) or []}
        for role in wanted:
            if fits(spec, role):
                found[role] |= images
    return found
