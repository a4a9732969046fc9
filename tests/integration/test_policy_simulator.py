"""The rendered NetworkPolicies, judged as kube-router applies them (tests/policy_model.py):
every connection a component declares passes, and nothing else does."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from builder.cluster.flows import Flow
from builder.manifests import registry
from builder.network import cluster_networks
from builder.site import load_site
from tests.conftest import EXAMPLE_SITE
from tests.integration.generated import Documents, every, manifests  # noqa: F401 (fixture)
from tests.integration.policy_cluster import OUTSIDERS, cluster_of, overlays_of
from tests.policy_model import (
    Cluster,
    Disagreement,
    Need,
    Pod,
    Request,
    _in_ipset,
    _ipset,
    candidate_requests,
    disagreements,
    dns_need,
    needs_of,
)


@pytest.fixture(scope="module")
def docs(manifests: dict[str, Documents]) -> Documents:  # noqa: F811
    return every(manifests)


@pytest.fixture(scope="module")
def flows(docs: Documents) -> tuple[Flow, ...]:
    """The single flow list, gathered from the components for the example site."""
    site = load_site(EXAMPLE_SITE)
    gathered = registry.gather(
        # The images the backup jobs run (Garage's runs the openedx image).
        site,
        overlays_of(docs),
        {"mysql": "mysql@sha256:0", "mongodb": "mongo@sha256:0", "openedx": "openedx@sha256:0"},
    )
    return gathered.flows


def model(docs: Documents, policies: list[dict[str, Any]] | None = None) -> Cluster:
    site = load_site(EXAMPLE_SITE)
    rendered = [d for d in docs if d["kind"] != "NetworkPolicy"]
    rendered += policies if policies is not None else [d for d in docs if d["kind"] == "NetworkPolicy"]
    return cluster_of(rendered, site, overlays_of(docs), cluster_networks(site.cluster))


def judge(cluster: Cluster, flows: tuple[Flow, ...]) -> list[Disagreement]:
    needs: list[Need] = [*needs_of(flows), dns_need()]
    return disagreements(cluster, needs, candidate_requests(cluster, OUTSIDERS))


def pod(cluster: Cluster, name: str, node: str) -> Pod:
    (found,) = [p for p in cluster.pods if p.name == name and p.node.name == node]
    return found


def test_the_policies_allow_exactly_the_declared_flows(docs: Documents, flows: tuple[Flow, ...]) -> None:
    found = judge(model(docs), flows)
    assert not found, "\n".join(str(d) for d in found[:40])


def policies_of(docs: Documents) -> list[dict[str, Any]]:
    return copy.deepcopy([d for d in docs if d["kind"] == "NetworkPolicy"])


def named_policy(policies: list[dict[str, Any]], namespace: str, name: str) -> dict[str, Any]:
    (found,) = [
        p for p in policies if p["metadata"]["namespace"] == namespace and p["metadata"]["name"] == name
    ]
    return found


def test_a_blocked_needed_flow_is_caught(docs: Documents, flows: tuple[Flow, ...]) -> None:
    policies = policies_of(docs)
    mysql_in = named_policy(policies, "openedx", "mysql-ingress")["spec"]["ingress"]
    mysql_in[:] = [
        rule
        for rule in mysql_in
        if rule["from"][0].get("podSelector", {}) != {"matchLabels": {"app.kubernetes.io/name": "lms"}}
    ]
    found = judge(model(docs, policies), flows)
    assert found and all(d.needed for d in found)
    assert {
        (str(d.request.source).split("@")[0], d.landing.target.name, d.landing.port)
        for d in found
        if isinstance(d.landing.target, Pod)
    } == {("openedx/lms", "mysql", 3306)}


def test_an_extra_allowed_flow_is_caught(docs: Documents, flows: tuple[Flow, ...]) -> None:
    # The namespace-wide rule that used to let, for example, smtp reach mysql.
    policies = policies_of(docs)
    policies.append(
        {
            "kind": "NetworkPolicy",
            "metadata": {"namespace": "openedx", "name": "all-ingress"},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openedx"}}}
                        ],
                        "ports": [{"protocol": "TCP", "port": 3306}],
                    }
                ],
            },
        }
    )
    policies.append(
        {
            "kind": "NetworkPolicy",
            "metadata": {"namespace": "openedx", "name": "all-egress"},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openedx"}}}
                        ],
                        "ports": [{"protocol": "TCP", "port": 3306}],
                    }
                ],
            },
        }
    )
    found = judge(model(docs, policies), flows)
    assert found and not any(d.needed for d in found)
    assert any(str(d.request.source).startswith("openedx/smtp@") and d.landing.port == 3306 for d in found)


def test_any_address_in_kube_router_misses_mycelium_and_takes_in_ulas(
    docs: Documents, flows: tuple[Flow, ...]
) -> None:
    """The old `::/0` on caddy-edge's ingress, as kube-router reads it."""
    policies = policies_of(docs)
    edge_in = named_policy(policies, "edge", "caddy-edge-ingress")["spec"]["ingress"]
    edge_in[0]["from"] = [{"ipBlock": {"cidr": "::/0"}}]
    found = judge(model(docs, policies), flows)
    blocked = {str(d.request.source) for d in found if d.needed}
    extra = {str(d.request.source).split("@")[0] for d in found if not d.needed}
    assert blocked == {"mycelium-client"}
    # And any ULA gets in, another network's included.
    assert extra == {"foreign-ula"}


def test_kube_router_ipsets() -> None:
    address = ipaddress.IPv6Address
    everything = _ipset([{"cidr": "::/0"}])
    assert not _in_ipset(everything, address("4ff::1"))
    assert _in_ipset(everything, address("fd12::1")) and _in_ipset(everything, address("2001:db8::1"))
    cut = _ipset([{"cidr": "2000::/3", "except": ["2001:db8::/32"]}])
    assert _in_ipset(cut, address("2a00::1")) and not _in_ipset(cut, address("2001:db8::1"))


def test_blackbox_probes_reach_every_edge_its_own_included(docs: Documents) -> None:
    """Item 3: on blackbox's node, the public name's hostPort lands on the local caddy-edge."""
    cluster = model(docs)
    for server in ("edx1", "edx2", "edx3"):
        blackbox = pod(cluster, "blackbox-exporter", server)
        for node in cluster.nodes:
            if not node.server:
                continue
            request = Request(blackbox, node.public, "TCP", 443)
            (landing,) = cluster.landings(request)
            assert isinstance(landing.target, Pod) and landing.target.name == "caddy-edge"
            assert landing.target.node == node and landing.port == 8443
            assert cluster.allowed(request, landing), (server, node.name)


def test_services_land_on_their_target_port(docs: Documents) -> None:
    cluster = model(docs)
    (blackbox_service,) = [s for s in cluster.services if s.name == "blackbox-exporter"]
    prometheus = pod(cluster, "prometheus", "edx1")
    landings = cluster.landings(Request(prometheus, blackbox_service.address, "TCP", 9115))
    assert {
        (landing.target.name, landing.port) for landing in landings if isinstance(landing.target, Pod)
    } == {("blackbox-exporter", 9115)}
    assert all(
        cluster.allowed(Request(prometheus, blackbox_service.address, "TCP", 9115), lg) for lg in landings
    )


def test_least_privilege_at_the_named_places(docs: Documents) -> None:
    cluster = model(docs)
    backup = next(node for node in cluster.nodes if not node.server)
    server = next(node for node in cluster.nodes if node.server)
    prometheus = pod(cluster, "prometheus", "edx1")

    def allowed(source: Pod, address: ipaddress.IPv6Address, port: int) -> bool:
        request = Request(source, address, "TCP", port)
        return all(cluster.allowed(request, landing) for landing in cluster.landings(request))

    assert not allowed(prometheus, backup.overlay, 6443)
    assert allowed(prometheus, server.overlay, 6443) and allowed(prometheus, backup.overlay, 9100)
    setup, member = pod(cluster, "couchdb-setup", "edx1"), pod(cluster, "couchdb", "edx2")
    assert allowed(setup, member.address, 5984)
    assert not allowed(setup, member.address, 4369) and not allowed(setup, member.address, 9100)
    smtp, mysql = pod(cluster, "smtp", "edx1"), pod(cluster, "mysql", "edx2")
    assert not allowed(smtp, mysql.address, 3306)
    internet = OUTSIDERS[0].address
    assert allowed(smtp, internet, 25) and allowed(smtp, internet, 587)
    assert not allowed(pod(cluster, "lms", "edx1"), internet, 25)
