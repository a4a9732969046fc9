"""Which pod may talk to which: the NetworkPolicies beside every namespace's default deny.

Each flow is written once, as the traffic it allows, and becomes an egress rule on the
client's side and an ingress rule on the server's side, so the two can never disagree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from builder.render.ports import Ports

ANYWHERE = "::/0"


@dataclass(frozen=True)
class Pods:
    namespace: str
    name: str | None = None  # None: every pod of the namespace


@dataclass(frozen=True)
class Addresses:
    cidr: str
    # Outside addresses only: the cluster's own prefix is never "the internet".
    excluding: tuple[str, ...] = ()


Peer = Pods | Addresses


@dataclass(frozen=True)
class Flow:
    source: Peer
    destination: Peer
    ports: tuple[int, ...]


def flows(ports: Ports, *, node_addresses: list[str], cluster_prefix: str, backup: bool) -> list[Flow]:
    internet = Addresses(ANYWHERE, (cluster_prefix,))
    edge, issuer = Pods("edge", "caddy-edge"), Pods("edge", "caddy-issuer")
    openedx, couchdb = Pods("openedx"), Pods("couchdb")
    prometheus, blackbox = Pods("monitoring", "prometheus"), Pods("monitoring", "blackbox-exporter")
    nodes = [Addresses(f"{address}/128") for address in node_addresses]
    result = [
        Flow(Addresses(ANYWHERE), edge, (ports.caddy_http, ports.caddy_https)),
        Flow(edge, Pods("openedx", "lms"), (ports.openedx,)),
        Flow(edge, Pods("openedx", "cms"), (ports.openedx,)),
        Flow(edge, issuer, (ports.caddy_http, ports.certificate)),
        # ACME: the issuer asks the CA; the CA's challenge comes back through the nodes.
        Flow(issuer, internet, (443,)),
        # Open edX among itself (web apps, workers, init job and Tutor's datastores).
        Flow(openedx, openedx, ports.openedx_internal),
        # Studio's single sign-on and outgoing mail.
        Flow(Pods("openedx"), internet, (443, 25, 587)),
        Flow(couchdb, couchdb, (ports.couchdb, ports.epmd, ports.erlang)),
        Flow(prometheus, couchdb, (ports.couchdb_metrics,)),
        Flow(prometheus, edge, (ports.caddy_metrics,)),
        Flow(prometheus, blackbox, (ports.blackbox,)),
        *(Flow(prometheus, node, (ports.node_exporter, ports.kubelet, ports.apiserver)) for node in nodes),
        Flow(blackbox, internet, (443,)),
    ]
    if backup:
        result += [
            Flow(Pods("backup", "backup-couchdb"), couchdb, (ports.couchdb,)),
            Flow(Pods("backup", "backup-mysql"), Pods("openedx", "mysql"), (ports.mysql,)),
            Flow(Pods("backup", "backup-mongodb"), Pods("openedx", "mongodb"), (ports.mongodb,)),
        ]
    return result


def _peer(peer: Peer) -> dict[str, Any]:
    if isinstance(peer, Addresses):
        return {"cidr": peer.cidr, "except": list(peer.excluding), "namespace": None, "name": None}
    return {"cidr": None, "except": [], "namespace": peer.namespace, "name": peer.name}


def _policy_name(pods: Pods, direction: str) -> str:
    return f"{pods.name or 'all'}-{direction}"


def policies(all_flows: list[Flow]) -> list[dict[str, Any]]:
    """The template's policies: per selected pods, their ingress and egress rules."""
    rules: dict[tuple[Pods, str], list[dict[str, Any]]] = defaultdict(list)
    for flow in all_flows:
        if isinstance(flow.source, Pods):
            rules[flow.source, "egress"].append({"peers": [_peer(flow.destination)], "ports": flow.ports})
        if isinstance(flow.destination, Pods):
            rules[flow.destination, "ingress"].append({"peers": [_peer(flow.source)], "ports": flow.ports})
    return [
        {
            "namespace": pods.namespace,
            "name": _policy_name(pods, direction),
            "target": pods.name,
            "ingress": rules_ if direction == "ingress" else [],
            "egress": rules_ if direction == "egress" else [],
        }
        for (pods, direction), rules_ in sorted(
            rules.items(), key=lambda item: (item[0][0].namespace, item[0][0].name or "", item[0][1])
        )
    ]
