"""Prometheus with node-exporter and blackbox-exporter, and Alertmanager, which mails the
operator through the cluster's SMTP relay (and calls site.yaml's webhook). Alert rules and
scrape jobs come from every component's fragments (alert_templates, scrape_templates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from builder.cluster.component import METRICS_PATH, Cluster, Component, Namespace, Scrape
from builder.cluster.digest import digest
from builder.cluster.flows import SCRAPER, Addresses, Flow, Pods, to_internet
from builder.site import Role

NAMESPACE = SCRAPER.namespace
BLACKBOX = Pods(NAMESPACE, "blackbox-exporter")
# node-exporter alone, in a namespace of its own: the only workload here that needs more
# than the restricted profile.
HOST_NAMESPACE = "monitoring-host"
ALERTMANAGER = Pods(NAMESPACE, "alertmanager")
# Tutor's mail relay, which Open edX sends through too (openedx-datastores).
SMTP_RELAY = Pods("openedx", "smtp")
SMTP_RELAY_PORT = 8025
# The Prometheus volume's size, and the share of it the TSDB may fill: the rest is
# headroom for the write-ahead log and compaction, which retention.size does not count.
PROMETHEUS_VOLUME_GIB = 10
PROMETHEUS_RETENTION_GB = 8
# Two replicas on different servers, each scraping everything: monitoring and alerting
# survive the loss of a server (Alertmanager deduplicates what both send). Sites have at
# least three servers, so the required anti-affinity always fits.
PROMETHEUS_REPLICAS = 2


class Monitoring(Component):
    name = "monitoring"
    images = ("alertmanager", "blackbox-exporter", "node-exporter", "prometheus")
    # node-exporter needs the host's network and process namespaces.
    namespaces = (
        Namespace(NAMESPACE, restricted=True),
        Namespace(
            HOST_NAMESPACE,
            restricted=False,
            privileged_because="node-exporter reads the node itself: the host's network and "
            "process namespaces and its root file system (hostNetwork, hostPID, hostPath)",
        ),
    )
    ports: ClassVar[Mapping[str, int]] = {
        "node_exporter": 9100,
        "blackbox": 9115,
        "alertmanager": 9093,
        # k3s's own, which Prometheus scrapes.
        "kubelet": 10250,
        "apiserver": 6443,
    }
    files: ClassVar[Mapping[str, str]] = {
        "prometheus.yml": "prometheus.yml.j2",
        "alerts.yml": "alerts.yml.j2",
        "blackbox.yml": "blackbox.yml.j2",
        "alertmanager.yml": "alertmanager.yml.j2",
    }
    manifests = ("monitoring", "monitoring-secrets")

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        return {
            "namespace": NAMESPACE,
            "host_namespace": HOST_NAMESPACE,
            "node_exporter_port": cluster.ports["node_exporter"],
            # Only the backup node has it, and only its node-exporter reads it.
            "textfile_dir": METRICS_PATH if cluster.backup_node is not None else None,
            "alert_email": cluster.site.alerts.email or f"postmaster@{cluster.site.domain}",
            "alert_webhook": cluster.site.alerts.webhook,
            "smtp_relay": f"{SMTP_RELAY.name}.{SMTP_RELAY.namespace}.svc.cluster.local:{SMTP_RELAY_PORT}",
            "replicas": PROMETHEUS_REPLICAS,
            "volume_gib": PROMETHEUS_VOLUME_GIB,
            "retention_gb": PROMETHEUS_RETENTION_GB,
        }

    def image_roles(self, cluster: Cluster) -> dict[str, frozenset[Role]]:
        # node-exporter is a DaemonSet on every node; the rest stay on the servers.
        return {**super().image_roles(cluster), "node-exporter": frozenset(Role)}

    def flows(self, cluster: Cluster) -> list[Flow]:
        ports = cluster.ports
        return [
            Flow(SCRAPER, BLACKBOX, (ports["blackbox"],)),
            # The nodes' own exporters, on the host network: matched by the node's address.
            *(
                Flow(
                    SCRAPER,
                    Addresses((f"{cluster.overlays[node.name]}/128",)),
                    _node_ports(ports, node.role is Role.SERVER),
                    f"{node.name}'s node-exporter and k3s, on the host network",
                )
                for node in cluster.site.nodes
            ),
            # The certificate probes ask for the public names, which resolve to every server:
            # to_internet also opens the local caddy-edge, where its own node sends them.
            *to_internet(BLACKBOX, (443,), "the certificate probes of the public names"),
            # Prometheus sends alerts; Alertmanager mails them through the relay, and
            # calls the webhook, wherever site.yaml says it is.
            Flow(SCRAPER, ALERTMANAGER, (ports["alertmanager"],)),
            Flow(ALERTMANAGER, SMTP_RELAY, (SMTP_RELAY_PORT,)),
            *(
                to_internet(ALERTMANAGER, (webhook_port(webhook),), "site.yaml's alerts.webhook")
                if (webhook := cluster.site.alerts.webhook)
                else []
            ),
        ]

    def scrapes(self, cluster: Cluster) -> list[Scrape]:
        return [Scrape(ALERTMANAGER, (cluster.ports["alertmanager"],))]

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "config_sha256": digest(files["prometheus.yml"], files["alerts.yml"]),
            "alertmanager_sha256": digest(files["alertmanager.yml"]),
        }


def webhook_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _node_ports(ports: Mapping[str, int], server: bool) -> tuple[int, ...]:
    """node-exporter and the kubelet everywhere; the API server only on servers (the backup
    node runs a k3s agent, which serves none)."""
    scraped = (ports["node_exporter"], ports["kubelet"])
    return (*scraped, ports["apiserver"]) if server else scraped


COMPONENT = Monitoring()
