"""What a node's seed says: its base system, its Mycelium identity and peers, its k3s role.

Everything here is public and goes into the seed derivation's inputs (and so its key).
The secrets (the k3s token, the Mycelium key) are derived inside the build from the
master key, and only ever written into the seed itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from builder.det.jsonfmt import canonical_json
from builder.errors import bad_input
from builder.lock import Lock
from builder.mycelium import MyceliumIdentity
from builder.network import MYCELIUM_INTERFACE, MYCELIUM_PORT, cluster_networks
from builder.site import Node, Role, Site
from builder.store.derivation import BuildContext, Derivation
from builder.store.store import ENTRY_RECORD

K3S_PORT = 6443
RESOLV_CONF = "/etc/rancher/k3s/resolv.conf"
LOG_FILE = "/var/log/meshseed-setup.log"
# node-setup's marker of success, and its exit status for a file that fails its sha256
# check (final: the unit does not retry it).
SETUP_DONE = "/var/lib/meshseed/setup.done"
REFUSED_STATUS = 3
PAYLOAD_LABEL = "meshseed-payload"
# Where a meshseed disk image holds the payload's files, in its root file system.
BAKED_PAYLOAD = "/usr/lib/meshseed/payload"
MESH_FILE = "mesh.json"
# Pinned files as the node stages them: lock name -> file name.
STAGED = {"k3s": "k3s", "k3s-install.sh": "k3s-install.sh", "mycelium": "mycelium.tar.gz"}


# What the kubelet checks under protect-kernel-defaults (the CIS benchmark's values, which
# k3s's hardening guide sets the same way): it will not start with others.
KUBELET_SYSCTLS = {
    "vm.panic_on_oom": "0",
    "vm.overcommit_memory": "1",
    "kernel.panic": "10",
    "kernel.panic_on_oops": "1",
    "kernel.keys.root_maxbytes": "25000000",
    "kernel.keys.root_maxkeys": "1000000",
}


# k3s's scheduled etcd snapshots on every server (docs.k3s.io/cli/etcd-snapshot), in the
# servers' system time (UTC on our images): every six hours, the last two days kept on the
# server, zipped. k3s writes them 0600 root under /var/lib/rancher/k3s/server, which is
# private (0700). The backup node keeps its own generations (backups.retention).
ETCD_SNAPSHOT_DIR = "/var/lib/rancher/k3s/server/db/snapshots"
ETCD_SNAPSHOTS: dict[str, Any] = {
    "etcd-snapshot-schedule-cron": "0 */6 * * *",
    "etcd-snapshot-retention": 8,
    "etcd-snapshot-dir": ETCD_SNAPSHOT_DIR,
    "etcd-snapshot-compress": True,
}


@dataclass(frozen=True)
class NodePlan:
    """Per-site facts every seed needs: identities of all nodes, and the first server."""

    identities: dict[str, MyceliumIdentity]
    first_server: Node


def base_inputs(site: Site, node: Node, epoch: int) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "instance_id": f"{site.cluster}-{node.name}",
        "site": {
            "cluster": site.cluster,
            "domain": site.domain,
            "resolvers": [str(address) for address in site.resolvers],
        },
        "kubelet_sysctls": KUBELET_SYSCTLS,
        "node": {
            "name": node.name,
            "role": node.role.value,
            "fqdn": f"{node.name}.{site.domain}",
            "public_ipv6": str(node.public_ipv6),
            "gateway": str(node.gateway),
            "ssh_authorized_keys": list(node.ssh_authorized_keys),
            "mac": node.mac,
            "uplink": node.uplink,
        },
    }


def k3s_settings(site: Site, node: Node, plan: NodePlan) -> dict[str, Any]:
    """k3s's config.yaml for `node`, without the token (added at build time)."""
    own = plan.identities[node.name].overlay_address
    server = node.role is Role.SERVER
    config: dict[str, Any] = {
        "node-name": node.name,
        "node-ip": str(own),
        "flannel-iface": MYCELIUM_INTERFACE,
        "node-label": [f"meshseed/role={node.role.value}"],
        # The site's resolvers for the pods (CoreDNS forwards to them), never a fallback.
        "resolv-conf": RESOLV_CONF,
        # The kubelet refuses to start rather than change a kernel setting it expects;
        # the seed sets them (KUBELET_SYSCTLS) before k3s ever starts.
        "protect-kernel-defaults": True,
    }
    if node.role is Role.BACKUP:
        config["node-taint"] = ["meshseed/role=backup:NoSchedule"]
    if server:
        networks = cluster_networks(site.cluster)
        config.update(
            {
                "flannel-backend": "vxlan",
                "flannel-ipv6-masq": True,
                "cluster-cidr": str(networks.pods),
                "service-cidr": str(networks.services),
                "cluster-dns": str(networks.services.network_address + 10),
                "disable": ["traefik", "servicelb"],
                # Secrets encrypted at rest in etcd, and so in its snapshots too.
                "secrets-encryption": True,
            }
        )
        # --- etcd snapshots (issue 21, item 4) ---------------------------------------
        # Every server snapshots etcd on its own; the etcd-snapshot-send CronJob
        # (components/backup.py) sends the newest one of the server it runs on to the
        # backup node. The directory is k3s's default, written out because that CronJob
        # mounts it.
        config.update(ETCD_SNAPSHOTS)
    joins = joined_server(site, node, plan.first_server)
    if joins is None:
        config["cluster-init"] = True
    else:
        config["server"] = f"https://[{plan.identities[joins.name].overlay_address}]:{K3S_PORT}"
    return {
        "server": server,
        "mode": "server" if server else "agent",
        "unit": "k3s" if server else "k3s-agent",
        "settings": config,
    }


def joined_server(site: Site, node: Node, first: Node) -> Node | None:
    """The server whose k3s `node` joins, or None for the one seed that starts the cluster.

    Only the first server's seed starts it, and only while the site does not say the cluster
    is bootstrapped: from then on that seed joins the second server, so that re-flashing the
    first server brings it back into the running cluster instead of starting an empty second
    one beside it (once a cluster has other members, the first server is like any other:
    k3s-io/k3s discussion #7070). The others always join the first server.
    """
    if node.name != first.name:
        return first
    if not site.bootstrapped:
        return None
    return next(server for server in site.servers if server.name != node.name)


def _tls_names(site: Site, plan: NodePlan) -> list[str]:
    names = [site.domain, site.lms_host, site.studio_host]
    for other in site.nodes:
        names += [str(other.public_ipv6.ip), str(plan.identities[other.name].overlay_address)]
    return names


def mesh_derivation(site: Site, plan: NodePlan) -> Derivation:
    """What every seed needs to know of every node: its Mycelium endpoints, and the names
    the k3s servers' certificate covers. One derivation holds it, and each seed depends on
    it, so that a seed's key grows with its own node, not with the size of the site."""
    endpoints = [[node.name, endpoints_of(node)] for node in site.nodes]
    return Derivation(
        name="mesh",
        build=build_mesh,
        inputs={
            "endpoints": endpoints,
            "tls_san": _tls_names(site, plan),
            # Every node's overlay address: the host firewalls let only these reach k3s.
            "overlays": sorted(str(plan.identities[node.name].overlay_address) for node in site.nodes),
        },
    )


def endpoints_of(node: Node) -> list[str]:
    address = node.public_ipv6.ip
    return [f"tcp://[{address}]:{MYCELIUM_PORT}", f"quic://[{address}]:{MYCELIUM_PORT}"]


def build_mesh(ctx: BuildContext) -> None:
    ctx.write(MESH_FILE, canonical_json(dict(ctx.inputs)))


def read_mesh(entry: Path) -> dict[str, Any]:
    return dict(json.loads((entry / MESH_FILE).read_text()))


def peers_of(mesh: dict[str, Any], node: str, extra: list[str]) -> list[str]:
    """Every other node's public endpoints (tcp and quic), then the node's extra peers."""
    peers = [endpoint for name, endpoints in mesh["endpoints"] if name != node for endpoint in endpoints]
    return peers + [peer for peer in extra if peer not in peers]


def pinned_files(lock: Lock, mirror: str | None) -> list[dict[str, str]]:
    """The files node-setup fetches (or takes from the payload), each with its sha256;
    with a mirror, from <mirror>/<host>/<path>."""
    return [
        {
            "name": STAGED[name],
            "url": mirrored(lock.binaries[name].url, mirror),
            "sha256": lock.binaries[name].sha256,
        }
        for name in sorted(STAGED)
    ]


def mirrored(url: str, mirror: str | None) -> str:
    if mirror is None:
        return url
    parts = urlsplit(url)
    return f"{mirror.rstrip('/')}/{parts.netloc}{parts.path}"


def check_downloads(site: Site) -> None:
    """A seed that downloads must be able to: the pinned files' hosts have no IPv6 address."""
    downloads = site.downloads
    if downloads.mirror or downloads.nat64 or downloads.ipv4:
        return
    raise bad_input(
        f"{site.source}: downloads: the nodes are IPv6-only and the pinned k3s and Mycelium live on "
        "GitHub, which has no IPv6 address, so the nodes could not download them",
        hint="set downloads.mirror (an IPv6 mirror), downloads.nat64 or downloads.ipv4 in site.yaml, "
        "or build with --airgap",
    )


@dataclass(frozen=True)
class StoredFile:
    path: str
    sha256: str

    @property
    def staged_name(self) -> str:
        """A role's bundle as the node stages it: images.tar or images.tar.zst."""
        return "images" + self.path[self.path.index(".tar") :]


def single_file(entry: Path) -> StoredFile:
    """The one file of a store entry (a bundle, a binary), with its recorded sha256."""
    record = json.loads((entry / ENTRY_RECORD).read_text())
    (file,) = [e for e in record["entries"] if e["mode"] != "directory"]
    return StoredFile(str(file["path"]), str(file["sha256"]))


def mycelium_inputs(site: Site, node: Node, plan: NodePlan) -> dict[str, Any]:
    identity = plan.identities[node.name]
    return {
        "interface": MYCELIUM_INTERFACE,
        "overlay_address": str(identity.overlay_address),
        "overlay_subnet": str(identity.overlay_subnet),
        "extra_peers": list(node.mycelium_peers),
        "public_key": identity.public_key.hex(),
    }
