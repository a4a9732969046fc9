"""A model of how k3s's kube-router applies NetworkPolicies, to judge rendered policies.

Written from kube-router's source (cloudnativelabs/kube-router, pkg/controllers/netpol),
not from the NetworkPolicy API's prose, where the two differ:

- A pod is governed in a direction only by the policies of its namespace whose podSelector
  matches it and whose policyTypes name that direction; with none, anything goes.
- A peer's pod or namespace selector matches only pods kube-router acts on: running, with
  an address, and not on the host network (utils.go, isNetPolActionable). A host-network
  pod (node-exporter, and k3s's own API server and kubelet) is reached by its node's
  addresses, matched only by ipBlock, and is never itself filtered.
- Every ipBlock of one rule goes into one hash:net ipset; its `except` entries go in as
  `nomatch`, and the most specific entry decides. An ipset cannot hold a /0, so an IPv6
  `::/0` becomes 2000::/3 plus fd00::/8 (policy.go, evalIPBlockPeer).
- Filtering happens after DNAT: a Service address becomes one of its pods at the
  targetPort, and a node address on a hostPort becomes that node's pod at its container
  port. On the client's own node the client keeps its pod address as the source; towards
  another node, flannel masquerades it (flannel-ipv6-masq) to the client node's address.
- Traffic from a node to its own pods always passes (kubelet probes); this model leaves
  node-originated traffic out.

A *request* is what a client does: connect from a source to an address, protocol and port.
`Cluster.verdict` says where it lands and whether the policies let it; `Cluster.needed`
says whether a declared flow asks for it. The two must agree on every request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from builder.cluster.flows import Addresses, Flow, Pods

Address = ipaddress.IPv6Address
Network = ipaddress.IPv6Network
Document = dict[str, Any]
NAME = "app.kubernetes.io/name"
# kube-router's stand-in for an IPv6 /0 (policy.go, evalIPBlockPeer).
KUBE_ROUTER_ALL = (Network("2000::/3"), Network("fd00::/8"))


@dataclass(frozen=True)
class Node:
    name: str
    server: bool
    overlay: Address
    public: Address
    # What listens on the host's own network (k3s, host-network pods): (protocol, port).
    listens: frozenset[tuple[str, int]] = frozenset()

    def __str__(self) -> str:
        return f"host:{self.name}"

    @property
    def labels(self) -> dict[str, str]:
        role = {"meshseed/role": "server" if self.server else "backup"}
        return {**role, "node-role.kubernetes.io/control-plane": "true"} if self.server else role


@dataclass(frozen=True)
class Pod:
    """One pod of a workload, on one node (every node it may be scheduled on gets one)."""

    namespace: str
    name: str  # the workload's app.kubernetes.io/name
    labels: tuple[tuple[str, str], ...]
    node: Node
    address: Address
    host_network: bool = False
    ports: tuple[tuple[str, str, int], ...] = ()  # (name, protocol, container port)
    host_ports: tuple[tuple[str, int, int], ...] = ()  # (protocol, host port, container port)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}@{self.node.name}"

    def listens(self, protocol: str, port: int) -> bool:
        return any((p, n) == (protocol, port) for _, p, n in self.ports)

    def port_named(self, target: int | str, protocol: str) -> int | None:
        if isinstance(target, int):
            return target
        return next((number for name, p, number in self.ports if (name, p) == (target, protocol)), None)


@dataclass(frozen=True)
class Outside:
    """A host outside the cluster."""

    name: str
    address: Address

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    address: Address
    selector: tuple[tuple[str, str], ...]
    ports: tuple[tuple[str, int, int | str], ...]  # (protocol, port, targetPort)


Source = Pod | Outside


@dataclass(frozen=True)
class Request:
    source: Source
    address: Address
    protocol: str
    port: int

    def __str__(self) -> str:
        return f"{self.source} -> [{self.address}]:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Landing:
    """Where a request ends after DNAT, and the source address that endpoint sees."""

    target: Pod | Node | Outside
    port: int
    seen_source: Address
    # The address and port the client's egress rules are checked against.
    seen_destination: Address
    seen_port: int


@dataclass
class Cluster:
    nodes: tuple[Node, ...]
    pods: tuple[Pod, ...]
    services: tuple[Service, ...]
    policies: tuple[Document, ...]
    namespace_labels: Mapping[str, Mapping[str, str]]
    _by_address: dict[Address, Pod | Node | Service | Outside] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for pod in self.pods:
            if not pod.host_network:
                self._by_address[pod.address] = pod
        for node in self.nodes:
            self._by_address[node.overlay] = node
            self._by_address[node.public] = node
        for service in self.services:
            self._by_address[service.address] = service

    # Where a request lands.

    def landings(self, request: Request) -> list[Landing]:
        """Every place the request may land (a Service has several backends)."""
        named = self._by_address.get(request.address)
        source_address = request.source.address
        if isinstance(named, Service):
            return [
                Landing(pod, port, source_address, pod.address, port)
                for pod, port in self._backends(named, request.protocol, request.port)
            ]
        if isinstance(named, Pod):
            if not named.listens(request.protocol, request.port):
                return []
            return [Landing(named, request.port, source_address, named.address, request.port)]
        if isinstance(named, Node):
            return self._at_node(request, named)
        outside = Outside("outside", request.address)
        return [Landing(outside, request.port, source_address, request.address, request.port)]

    def _at_node(self, request: Request, node: Node) -> list[Landing]:
        source = request.source
        local = isinstance(source, Pod) and source.node == node
        # Masqueraded towards another node, to the client node's address of the same kind.
        if isinstance(source, Pod) and not local:
            seen_source = source.node.overlay if request.address == node.overlay else source.node.public
        else:
            seen_source = source.address
        for pod in self.pods:
            if pod.node != node:
                continue
            for protocol, host_port, container_port in pod.host_ports:
                if (protocol, host_port) == (request.protocol, request.port):
                    # The client's filter sees the pod where the DNAT is on its own node;
                    # from another node it sees the node address it sent to.
                    if isinstance(source, Pod) and not local:
                        return [Landing(pod, container_port, seen_source, request.address, request.port)]
                    return [Landing(pod, container_port, seen_source, pod.address, container_port)]
        # Whether or not anything listens, the policies decide whether the packet leaves.
        return [Landing(node, request.port, seen_source, request.address, request.port)]

    def _backends(self, service: Service, protocol: str, port: int) -> Iterator[tuple[Pod, int]]:
        for service_protocol, service_port, target in service.ports:
            if (service_protocol, service_port) != (protocol, port):
                continue
            for pod in self.pods:
                if pod.namespace == service.namespace and _selects(dict(service.selector), dict(pod.labels)):
                    resolved = pod.port_named(target, protocol)
                    if resolved is not None:
                        yield pod, resolved

    # Whether the policies let it through.

    def allowed(self, request: Request, landing: Landing) -> bool:
        source = request.source
        if isinstance(source, Pod) and not source.host_network:
            # Selectors see the pod only where the filter does (not through another node).
            seen_pod = isinstance(landing.target, Pod) and landing.seen_destination == landing.target.address
            target = landing.target if seen_pod and isinstance(landing.target, Pod) else None
            if not self._permits(
                source, "Egress", landing.seen_destination, target, request.protocol, landing.seen_port
            ):
                return False
        if isinstance(landing.target, Pod) and not landing.target.host_network:
            peer = source if isinstance(source, Pod) and landing.seen_source == source.address else None
            return self._permits(
                landing.target, "Ingress", landing.seen_source, peer, request.protocol, landing.port
            )
        return True

    def _permits(  # noqa: PLR0917 (the five facts a rule is matched against)
        self, pod: Pod, direction: str, address: Address, peer: Pod | None, protocol: str, port: int
    ) -> bool:
        governing = [
            policy
            for policy in self.policies
            if policy["metadata"]["namespace"] == pod.namespace
            and direction in policy["spec"].get("policyTypes", ["Ingress"])
            and _selects_pod(policy["spec"]["podSelector"], pod)
        ]
        if not governing:
            return True
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        port_owner = pod if direction == "Ingress" else peer
        return any(
            self._peer_matches(rule.get(peers_key) or [], policy["metadata"]["namespace"], address, peer)
            and _port_matches(rule.get("ports") or [], protocol, port, port_owner)
            for policy in governing
            for rule in policy["spec"].get(key) or []
        )

    def _peer_matches(self, peers: list[Document], namespace: str, address: Address, pod: Pod | None) -> bool:
        if not peers:
            return True
        blocks = [peer["ipBlock"] for peer in peers if "ipBlock" in peer]
        if blocks and _in_ipset(_ipset(blocks), address):
            return True
        # Selectors match only pods kube-router acts on (never the host network).
        if pod is None or pod.host_network:
            return False
        for peer in peers:
            if "ipBlock" in peer:
                continue
            namespaces = peer.get("namespaceSelector")
            if namespaces is None:
                in_namespace = pod.namespace == namespace
            else:
                in_namespace = _selects_labels(namespaces, dict(self.namespace_labels.get(pod.namespace, {})))
            pods = peer.get("podSelector")
            if in_namespace and (pods is None or _selects_pod(pods, pod)):
                return True
        return False


def _ipset(blocks: list[Document]) -> list[tuple[Network, bool]]:
    """One rule's hash:net ipset: (network, nomatch), /0 as kube-router spells it."""
    entries: list[tuple[Network, bool]] = []
    for block in blocks:
        entries += [(network, False) for network in _expand(block["cidr"])]
        entries += [(network, True) for excluded in block.get("except", []) for network in _expand(excluded)]
    return entries


def _expand(cidr: str) -> tuple[Network, ...]:
    network = Network(cidr)
    return KUBE_ROUTER_ALL if network.prefixlen == 0 else (network,)


def _in_ipset(entries: list[tuple[Network, bool]], address: Address) -> bool:
    # hash:net tries the most specific prefix first; a nomatch entry there says no.
    matching = [(network.prefixlen, nomatch) for network, nomatch in entries if address in network]
    if not matching:
        return False
    longest = max(length for length, _ in matching)
    return not any(nomatch for length, nomatch in matching if length == longest)


def _port_matches(ports: list[Document], protocol: str, port: int, owner: Pod | None) -> bool:
    if not ports:
        return True
    for entry in ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        wanted = entry.get("port")
        if wanted is None:
            return True
        if isinstance(wanted, str):
            resolved = owner.port_named(wanted, protocol) if owner else None
            if resolved == port:
                return True
        elif int(wanted) <= port <= int(entry.get("endPort") or wanted):
            return True
    return False


def _selects_pod(selector: Document, pod: Pod) -> bool:
    return not pod.host_network and _selects_labels(selector, dict(pod.labels))


def _selects(match: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in match.items())


def _selects_labels(selector: Document, labels: Mapping[str, str]) -> bool:
    if not _selects(selector.get("matchLabels") or {}, labels):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


# What the flows ask for.


@dataclass(frozen=True)
class Need:
    """A declared flow, or a need the policies template states (DNS) rather than flows.py."""

    source: Callable[[Source], bool]
    lands: Callable[[Request, Landing], bool]
    why: str


def needs_of(flows: Iterable[Flow]) -> list[Need]:
    """A flow to pods asks for every pod it names, on those ports after DNAT; a flow to
    addresses asks for every address in its ranges, on the port the client asks for."""
    return [_need(flow) for flow in flows]


def _need(flow: Flow) -> Need:
    def source(candidate: Source) -> bool:
        if isinstance(flow.source, Pods):
            return isinstance(candidate, Pod) and _is(candidate, flow.source)
        return not isinstance(candidate, Pod) and _within(candidate.address, flow.source)

    def lands(request: Request, landing: Landing) -> bool:
        destination = flow.destination
        if isinstance(destination, Pods):
            # Only where the client's filter sees the pod: by its address, a Service, or a
            # hostPort on the client's own node. Through another node's address it sees
            # that address, which only an address flow opens.
            return (
                isinstance(landing.target, Pod)
                and landing.seen_destination == landing.target.address
                and _is(landing.target, destination)
                and landing.port in flow.ports
            )
        return (
            _within(request.address, destination) and request.port in flow.ports and request.protocol == "TCP"
        )

    return Need(source, lands, str(flow))


def dns_need() -> Need:
    """Every pod resolves names (the template's allow-dns, outside flows.py)."""
    return Need(
        lambda source: isinstance(source, Pod),
        lambda request, landing: (
            isinstance(landing.target, Pod)
            and landing.target.namespace == "kube-system"
            and dict(landing.target.labels).get("k8s-app") == "kube-dns"
            and landing.port == 53
        ),
        "DNS",
    )


def _is(pod: Pod, pods: Pods) -> bool:
    return pod.namespace == pods.namespace and (pods.name is None or pod.name == pods.name)


def _within(address: Address, addresses: Addresses) -> bool:
    inside = any(address in Network(cidr) for cidr in addresses.cidrs)
    return inside and not any(address in Network(cidr) for cidr in addresses.excluding)


@dataclass(frozen=True)
class Disagreement:
    request: Request
    landing: Landing
    needed: bool

    def __str__(self) -> str:
        target = self.landing.target
        what = "needed but blocked" if self.needed else "allowed but not needed"
        return f"{what}: {self.request} (lands on {target}:{self.landing.port})"


def disagreements(cluster: Cluster, needs: list[Need], requests: Iterable[Request]) -> list[Disagreement]:
    found = []
    for request in requests:
        for landing in cluster.landings(request):
            # A node's own listeners, reached from outside, answer to the host's firewall,
            # not to NetworkPolicy.
            if isinstance(request.source, Outside) and isinstance(landing.target, Node):
                continue
            needed = any(need.source(request.source) and need.lands(request, landing) for need in needs)
            if needed != cluster.allowed(request, landing):
                found.append(Disagreement(request, landing, needed))
    return found


def candidate_requests(cluster: Cluster, outsiders: Iterable[Outside]) -> Iterator[Request]:
    """Every pod (off the host network) and every outside host, to every address the model
    knows (pods, Services, nodes, outside hosts), on every port anything names."""
    outsiders = tuple(outsiders)
    ports = {(protocol, number) for pod in cluster.pods for _, protocol, number in pod.ports}
    ports |= {(protocol, host) for pod in cluster.pods for protocol, host, _ in pod.host_ports}
    ports |= {(protocol, port) for node in cluster.nodes for protocol, port in node.listens}
    ports |= {(p, n) for service in cluster.services for p, n, _ in service.ports}
    for policy in cluster.policies:
        for direction in ("ingress", "egress"):
            for rule in policy["spec"].get(direction) or []:
                for entry in rule.get("ports") or []:
                    if isinstance(entry.get("port"), int):
                        ports.add((entry.get("protocol", "TCP"), entry["port"]))
    addresses = [
        *(pod.address for pod in cluster.pods if not pod.host_network),
        *(service.address for service in cluster.services),
        *(address for node in cluster.nodes for address in (node.overlay, node.public)),
        *(outsider.address for outsider in outsiders),
    ]
    # Pods of namespaces without policies of ours (k3s's kube-system) are not judged.
    judged = {policy["metadata"]["namespace"] for policy in cluster.policies}
    clients = (pod for pod in cluster.pods if not pod.host_network and pod.namespace in judged)
    sources: list[Source] = [*clients, *outsiders]
    for source in sources:
        for address in addresses:
            # From outside, only the nodes' addresses are routed to the cluster.
            if isinstance(source, Outside) and not isinstance(cluster._by_address.get(address), Node):
                continue
            for protocol, port in sorted(ports):
                yield Request(source, address, protocol, port)
