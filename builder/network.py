"""Addresses the cluster derives rather than asks for: its pod and service networks."""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

MYCELIUM_PORT = 9651
MYCELIUM_INTERFACE = "mycelium"
# Mycelium's TUN carries 1400-byte packets; flannel's VXLAN fits inside it by reading it.
MYCELIUM_MTU = 1400


@dataclass(frozen=True)
class ClusterNetworks:
    """IPv6-only unique local prefixes (RFC 4193), from the cluster name, so that two clusters
    almost surely differ and one cluster always gets the same ones."""

    prefix: ipaddress.IPv6Network

    @property
    def pods(self) -> ipaddress.IPv6Network:
        return next(self.prefix.subnets(new_prefix=56))

    @property
    def services(self) -> ipaddress.IPv6Network:
        # Kubernetes allows at most 20 host bits for an IPv6 service range.
        last = list(self.prefix.subnets(new_prefix=56))[-1]
        return next(last.subnets(new_prefix=108))


def cluster_networks(cluster: str) -> ClusterNetworks:
    global_id = hashlib.sha256(f"meshseed/ula/{cluster}".encode()).digest()[:5]
    prefix = ipaddress.IPv6Network((b"\xfd" + global_id + bytes(10), 48))
    return ClusterNetworks(prefix)
