"""Prometheus with node-exporter and blackbox-exporter; alert rules and scrape jobs come
from every component's fragments (alert_templates, scrape_templates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import METRICS_PATH, Cluster, Component, Namespace
from builder.cluster.digest import digest
from builder.cluster.flows import SCRAPER, Addresses, Flow, Pods, internet
from builder.site import Role

NAMESPACE = SCRAPER.namespace
BLACKBOX = Pods(NAMESPACE, "blackbox-exporter")


class Monitoring(Component):
    name = "monitoring"
    images = ("blackbox-exporter", "node-exporter", "prometheus")
    # node-exporter needs the host's network and process namespaces.
    namespaces = (Namespace(NAMESPACE, restricted=False),)
    ports: ClassVar[Mapping[str, int]] = {
        "node_exporter": 9100,
        "blackbox": 9115,
        # k3s's own, which Prometheus scrapes.
        "kubelet": 10250,
        "apiserver": 6443,
    }
    files: ClassVar[Mapping[str, str]] = {
        "prometheus.yml": "prometheus.yml.j2",
        "alerts.yml": "alerts.yml.j2",
        "blackbox.yml": "blackbox.yml.j2",
    }
    manifests = ("monitoring",)

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        return {
            "namespace": NAMESPACE,
            "node_exporter_port": cluster.ports["node_exporter"],
            # Only the backup node has it, and only its node-exporter reads it.
            "textfile_dir": METRICS_PATH if cluster.backup_node is not None else None,
        }

    def image_roles(self, cluster: Cluster) -> dict[str, frozenset[Role]]:
        # node-exporter is a DaemonSet on every node; the rest stay on the servers.
        return {**super().image_roles(cluster), "node-exporter": frozenset(Role)}

    def flows(self, cluster: Cluster) -> list[Flow]:
        ports = cluster.ports
        node_ports = (ports["node_exporter"], ports["kubelet"], ports["apiserver"])
        return [
            Flow(SCRAPER, BLACKBOX, (ports["blackbox"],)),
            *(
                Flow(SCRAPER, Addresses(f"{cluster.overlays[node.name]}/128"), node_ports)
                for node in cluster.site.nodes
            ),
            Flow(BLACKBOX, internet(str(cluster.networks.prefix)), (443,)),
        ]

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {"config_sha256": digest(files["prometheus.yml"], files["alerts.yml"])}


COMPONENT = Monitoring()
