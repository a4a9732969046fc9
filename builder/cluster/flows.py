"""Which pod may talk to which: the NetworkPolicies beside every namespace's default deny.

Each flow is written once, as the traffic it allows, and becomes an egress rule on the
client's side and an ingress rule on the server's side, so the two can never disagree.

Address ranges are written out, never `::/0`: kube-router (k3s's policy controller) cannot
put a /0 in an ipset and turns an IPv6 `::/0` into 2000::/3 plus fd00::/8
(cloudnativelabs/kube-router, pkg/controllers/netpol/policy.go, evalIPBlockPeer, since
5d04a9fd "netpol: Add dual-stack support"). That drops Mycelium's 400::/7 and takes in
every ULA, the cluster's own pods and services included.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

# IPv6 global unicast: the internet, our nodes' public addresses included.
GLOBAL_UNICAST = "2000::/3"
# Mycelium's overlay: clients that reach a node by its overlay address.
MYCELIUM = "400::/7"


@dataclass(frozen=True)
class Pods:
    namespace: str
    name: str | None = None  # None: every pod of the namespace


@dataclass(frozen=True)
class Addresses:
    cidrs: tuple[str, ...]
    # Left out of every range above (an ipBlock's `except`).
    excluding: tuple[str, ...] = ()


Peer = Pods | Addresses
# Prometheus, which every component's scrape targets let in.
SCRAPER = Pods("monitoring", "prometheus")
# caddy-edge holds every server's ports 80 and 443 (hostPort -> these container ports).
EDGE = Pods("edge", "caddy-edge")
EDGE_HOST_PORTS = {80: 8080, 443: 8443}
INTERNET = Addresses((GLOBAL_UNICAST,))


@dataclass(frozen=True)
class Flow:
    source: Peer
    destination: Peer
    ports: tuple[int, ...]
    # Why, for a flow to or from outside the cluster (required there).
    reason: str = ""


def to_internet(source: Pods, ports: tuple[int, ...], reason: str) -> list[Flow]:
    """`source` may open connections to public addresses on `ports`, for `reason`.

    Our public names resolve to the servers' public addresses, which are public addresses
    too. On another node that is the internet; on the client's own node the hostPort rule
    turns the connection into one to the local caddy-edge pod, with the client's pod
    address as the source, which an internet rule does not match. So a port that caddy-edge
    holds also opens that local path, or one connection in (servers) would fail.
    """
    if not reason:
        raise ValueError(f"{source}: internet egress needs a reason")
    local = tuple(EDGE_HOST_PORTS[port] for port in ports if port in EDGE_HOST_PORTS)
    return [
        Flow(source, INTERNET, ports, reason),
        *(
            [Flow(source, EDGE, local, f"{reason}; our own public names, on the client's node")]
            if local
            else []
        ),
    ]


def merged(all_flows: list[Flow]) -> list[Flow]:
    """One flow per (source, destination), at its first place, with every port asked for:
    components that serve one set of pods (Open edX and its datastores) declare apart."""
    ports: dict[tuple[Peer, Peer], list[int]] = {}
    reasons: dict[tuple[Peer, Peer], str] = {}
    for flow in all_flows:
        wanted = ports.setdefault((flow.source, flow.destination), [])
        wanted += [port for port in flow.ports if port not in wanted]
        reasons.setdefault((flow.source, flow.destination), flow.reason)
    return [
        Flow(source, destination, tuple(wanted), reasons[source, destination])
        for (source, destination), wanted in ports.items()
    ]


def _peers(peer: Peer) -> list[dict[str, Any]]:
    if isinstance(peer, Addresses):
        return [
            {"cidr": cidr, "except": _inside(peer.excluding, cidr), "namespace": None, "name": None}
            for cidr in peer.cidrs
        ]
    return [{"cidr": None, "except": [], "namespace": peer.namespace, "name": peer.name}]


def _inside(excluding: tuple[str, ...], cidr: str) -> list[str]:
    # An except outside its own cidr is refused by the API server; kube-router would put it
    # in the rule's one ipset as "nomatch", where it would cut into the rule's other blocks.
    network = ipaddress.IPv6Network(cidr)
    return [block for block in excluding if ipaddress.IPv6Network(block).subnet_of(network)]


def _policy_name(pods: Pods, direction: str) -> str:
    return f"{pods.name or 'all'}-{direction}"


def policies(all_flows: list[Flow]) -> list[dict[str, Any]]:
    """The template's policies: per selected pods, their ingress and egress rules."""
    rules: dict[tuple[Pods, str], list[dict[str, Any]]] = defaultdict(list)
    for flow in all_flows:
        outside = not isinstance(flow.source, Pods) or not isinstance(flow.destination, Pods)
        if outside and not flow.reason:
            raise ValueError(f"{flow}: a flow to or from outside the cluster needs a reason")
        if isinstance(flow.source, Pods):
            rules[flow.source, "egress"].append({"peers": _peers(flow.destination), "ports": flow.ports})
        if isinstance(flow.destination, Pods):
            rules[flow.destination, "ingress"].append({"peers": _peers(flow.source), "ports": flow.ports})
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
