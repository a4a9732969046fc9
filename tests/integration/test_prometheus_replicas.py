"""Prometheus survives the loss of a server (issue #19 item 5): two replicas on different
servers, each with its own volume and the whole config, and nothing that tells their
alerts apart, so that Alertmanager deduplicates what both send
(test_alerting_programs.py sends it the same alerts twice and gets one notification)."""

from __future__ import annotations

import yaml

from tests.integration.generated import Documents, config, every, manifests, named

__all__ = ["manifests"]  # fixtures


def test_two_replicas_on_two_servers_each_with_its_own_volume(manifests: dict[str, Documents]) -> None:
    docs = every(manifests)
    prometheus = named(docs, "StatefulSet", "prometheus")
    spec = prometheus["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert {m["name"] for m in pod["containers"][0]["volumeMounts"]} >= {"data", "config"}
    # No shared claim (a node-bound single copy) remains, and the StatefulSet's Service exists.
    assert not [
        d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "prometheus"
    ]
    assert named(docs, "Service", "prometheus")["spec"]["clusterIP"] == "None"


def test_both_replicas_send_alerts_alertmanager_can_deduplicate(manifests: dict[str, Documents]) -> None:
    settings = yaml.safe_load(config(manifests, "prometheus-config", "prometheus.yml"))
    # A per-replica external label would make the two copies of an alert two alerts.
    assert set(settings["global"]["external_labels"]) == {"cluster"}
    assert not any("alert_relabel_configs" in a for a in settings["alerting"].get("alertmanagers", []))
