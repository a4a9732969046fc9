"""Prometheus's ClusterRole grants what its scrape jobs use, nothing more."""

from __future__ import annotations

import yaml

from tests.integration.generated import Documents, config, every, manifests, named  # noqa: F401 (fixture)


def test_static_discovery_needs_no_list_or_watch(manifests: dict[str, Documents]) -> None:  # noqa: F811
    jobs = yaml.safe_load(config(manifests, "prometheus-config", "prometheus.yml"))["scrape_configs"]
    # Were a job to discover through the API, it would need list and watch on its role.
    assert not [job["job_name"] for job in jobs if "kubernetes_sd_configs" in job]
    role = named(every(manifests), "ClusterRole", "meshseed-prometheus")
    assert role["rules"] == [
        # The kubelets' /metrics (authorized as nodes/metrics) and the API servers' /metrics.
        {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
    ]
