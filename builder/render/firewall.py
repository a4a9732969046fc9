"""The host firewall a node's seed loads before Mycelium and k3s start (nftables).

It lives in a table of its own (`inet meshseed`), so it never edits what k3s, flannel and
kube-router write (their iptables-nft tables): nftables runs every base chain of a hook,
and a packet passes only if none drops it. So this table only drops; what it lets
through still meets theirs.
"""

from __future__ import annotations

from typing import Any

from builder.network import MYCELIUM_INTERFACE, MYCELIUM_PORT
from builder.site import Node, Role

# k3s's ports that only the cluster's own nodes may reach, over the overlay:
# the API server and supervisor, etcd's client and peer ports, the kubelet, and
# node-exporter (which Prometheus scrapes on every node's overlay address).
CLUSTER_TCP = (2379, 2380, 6443, 9100, 10250)
# flannel's VXLAN.
CLUSTER_UDP = (8472,)
SSH = 22
# The edge Caddy's hostPorts, on server nodes.
WEB = (80, 443)
RULESET = "/etc/meshseed/firewall.nft"
TABLE = "inet meshseed"


def firewall_inputs(node: Node) -> dict[str, Any]:
    """What the ruleset template needs of the node (the overlay addresses of every node
    come from the mesh derivation, at build time)."""
    return {
        "uplink": node.uplink,
        "public": str(node.public_ipv6.ip),
        "overlay_interface": MYCELIUM_INTERFACE,
        "mycelium_port": MYCELIUM_PORT,
        "ssh": SSH,
        "web": list(WEB) if node.role is Role.SERVER else [],
        "cluster_tcp": list(CLUSTER_TCP),
        "cluster_udp": list(CLUSTER_UDP),
        "ruleset": RULESET,
        "table": TABLE,
    }
