"""Which pod may talk to which: the NetworkPolicies beside every namespace's default deny.

Each flow is written once, as the traffic it allows, and becomes an egress rule on the
client's side and an ingress rule on the server's side, so the two can never disagree.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

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
# Prometheus, which every component's scrape targets let in.
SCRAPER = Pods("monitoring", "prometheus")


@dataclass(frozen=True)
class Flow:
    source: Peer
    destination: Peer
    ports: tuple[int, ...]


def internet(cluster_prefix: str) -> Addresses:
    """Outside addresses: everything but the cluster's own prefix."""
    return Addresses(ANYWHERE, (cluster_prefix,))


def merged(all_flows: list[Flow]) -> list[Flow]:
    """One flow per (source, destination), at its first place, with every port asked for:
    components that serve one set of pods (Open edX and its datastores) declare apart."""
    ports: dict[tuple[Peer, Peer], list[int]] = {}
    for flow in all_flows:
        wanted = ports.setdefault((flow.source, flow.destination), [])
        wanted += [port for port in flow.ports if port not in wanted]
    return [Flow(source, destination, tuple(wanted)) for (source, destination), wanted in ports.items()]


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
