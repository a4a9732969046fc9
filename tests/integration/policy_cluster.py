"""The example site's rendered manifests as the policy model's cluster: its nodes, every pod
a workload may run on each node, its Services, policies and namespaces."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import yaml

from builder.network import ClusterNetworks
from builder.site import Role, Site
from tests.policy_model import NAME, Cluster, Node, Outside, Pod, Service

Document = dict[str, Any]
# k3s's own listeners on the host: the kubelet everywhere, the API server on servers only
# (the backup node runs an agent).
KUBELET, APISERVER = ("TCP", 10250), ("TCP", 6443)
BACKUP_TAINT = ("meshseed/role", "backup")
# Hosts outside the cluster: a public one, a Mycelium client, and another network's ULA.
OUTSIDERS = (
    Outside("internet", ipaddress.IPv6Address("2001:4860:4860::8888")),
    Outside("mycelium-client", ipaddress.IPv6Address("4ff:1::1")),
    Outside("foreign-ula", ipaddress.IPv6Address("fd12:3456:789a::1")),
)


def overlays_of(docs: list[Document]) -> dict[str, str]:
    """Each node's overlay address, as the rendered Prometheus config scrapes it."""
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "prometheus-config"]
    (job,) = [
        j
        for j in yaml.safe_load(config["data"]["prometheus.yml"])["scrape_configs"]
        if j["job_name"] == "node"
    ]
    return {
        static["labels"]["node"]: static["targets"][0].rsplit(":", 1)[0].strip("[]")
        for static in job["static_configs"]
    }


def cluster_of(
    docs: list[Document], site: Site, overlays: dict[str, str], networks: ClusterNetworks
) -> Cluster:
    servers = [node.name for node in site.nodes if node.role is Role.SERVER]
    bare = [
        Node(
            node.name,
            node.role is Role.SERVER,
            ipaddress.IPv6Address(overlays[node.name]),
            node.public_ipv6.ip,
        )
        for node in site.nodes
    ]
    subnets = dict(zip([n.name for n in bare], networks.pods.subnets(new_prefix=64), strict=False))
    hosts: dict[str, Iterator[ipaddress.IPv6Address]] = {name: subnets[name].hosts() for name in subnets}
    templates = [*_templates(docs), _kube_dns(servers)]
    pods = []
    for namespace, spec, labels in templates:
        for node in bare:
            if not _schedules(spec, node):
                continue
            host_network = bool(spec.get("hostNetwork"))
            containers = spec["containers"]
            pods.append(
                Pod(
                    namespace=namespace,
                    name=labels.get(NAME) or labels.get("k8s-app", ""),
                    labels=tuple(sorted(labels.items())),
                    node=node,
                    address=node.overlay if host_network else next(hosts[node.name]),
                    host_network=host_network,
                    ports=tuple(
                        (p.get("name", ""), p.get("protocol", "TCP"), p["containerPort"])
                        for c in containers
                        for p in c.get("ports", [])
                    ),
                    host_ports=tuple(
                        (p.get("protocol", "TCP"), p["hostPort"], p["containerPort"])
                        for c in containers
                        for p in c.get("ports", [])
                        if "hostPort" in p
                    ),
                )
            )
    nodes = tuple(
        Node(
            node.name,
            node.server,
            node.overlay,
            node.public,
            frozenset(
                {KUBELET, *([APISERVER] if node.server else [])}
                | {
                    (protocol, port)
                    for p in pods
                    if p.host_network and p.node == node
                    for _, protocol, port in p.ports
                }
            ),
        )
        for node in bare
    )
    by_name = {node.name: node for node in nodes}
    pods = [_on(pod, by_name[pod.node.name]) for pod in pods]
    return Cluster(
        nodes=nodes,
        pods=tuple(pods),
        services=tuple(_services(docs, networks)),
        policies=tuple(d for d in docs if d["kind"] == "NetworkPolicy"),
        namespace_labels={
            **{
                d["metadata"]["name"]: {
                    **d["metadata"].get("labels", {}),
                    "kubernetes.io/metadata.name": d["metadata"]["name"],
                }
                for d in docs
                if d["kind"] == "Namespace"
            },
            "kube-system": {"kubernetes.io/metadata.name": "kube-system"},
        },
    )


def _on(pod: Pod, node: Node) -> Pod:
    address = node.overlay if pod.host_network else pod.address
    return Pod(
        pod.namespace, pod.name, pod.labels, node, address, pod.host_network, pod.ports, pod.host_ports
    )


def _templates(docs: list[Document]) -> Iterator[tuple[str, Document, dict[str, str]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
            template = doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
        else:
            continue
        yield doc["metadata"]["namespace"], template["spec"], dict(template["metadata"]["labels"])


def _kube_dns(servers: list[str]) -> tuple[str, Document, dict[str, str]]:
    """k3s's CoreDNS, which no manifest of ours renders (it runs on the servers)."""
    spec = {
        "nodeSelector": {"node-role.kubernetes.io/control-plane": "true"},
        "containers": [
            {
                "ports": [
                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                ]
            }
        ],
    }
    return "kube-system", spec, {"k8s-app": "kube-dns"}


def _schedules(spec: Document, node: Node) -> bool:
    if any(node.labels.get(key) != value for key, value in (spec.get("nodeSelector") or {}).items()):
        return False
    if node.server:
        return True
    key, value = BACKUP_TAINT
    return any(
        (t.get("operator") == "Exists" and t.get("key") in (None, key))
        or (t.get("key"), t.get("value")) == (key, value)
        for t in spec.get("tolerations") or []
    )


def _services(docs: list[Document], networks: ClusterNetworks) -> Iterator[Service]:
    addresses = networks.services.hosts()
    next(addresses)  # the API server's
    specs = [
        (d["metadata"]["namespace"], d["metadata"]["name"], d["spec"]) for d in docs if d["kind"] == "Service"
    ]
    specs.append(
        (
            "kube-system",
            "kube-dns",
            {
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"port": 53, "protocol": "UDP", "targetPort": 53},
                    {"port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        )
    )
    for namespace, name, spec in specs:
        # A headless Service has no address of its own: its names are the pods'.
        if spec.get("clusterIP") == "None":
            continue
        yield Service(
            namespace,
            name,
            next(addresses),
            tuple(sorted(spec["selector"].items())),
            tuple(
                (p.get("protocol", "TCP"), p["port"], p.get("targetPort", p["port"])) for p in spec["ports"]
            ),
        )
