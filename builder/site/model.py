"""The typed, frozen model of a site: what site.yaml describes once it has been checked.

Field metadata carries the documentation (`doc`) and, for lists, the minimum length
(`min_items`); the loader and the JSON Schema both read it from here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from builder.site.scalars import (
    DnsName,
    EmailAddress,
    HttpUrl,
    InterfaceName,
    IPv6Address,
    MacAddress,
    PeerEndpoint,
    PublicInterface,
    SshPublicKey,
)
from builder.typed_yaml.scalars import Label


class Role(StrEnum):
    """What a node does in the cluster."""

    SERVER = "server"
    AGENT = "agent"
    BACKUP = "backup"


def _doc(text: str, **extra: object) -> dict[str, object]:
    return {"doc": text, **extra}


@dataclass(frozen=True)
class Node:
    """One machine of the cluster."""

    name: Label = field(metadata=_doc("Host name of the node; an RFC 1123 label."))
    role: Role = field(
        metadata=_doc("server: k3s server with embedded etcd; agent: k3s worker; backup: the backup node.")
    )
    public_ipv6: PublicInterface = field(
        metadata=_doc("Static public IPv6 address with its prefix length, e.g. 2001:db8:1::10/64.")
    )
    gateway: IPv6Address = field(
        metadata=_doc("IPv6 default gateway: inside the node's prefix or link-local (fe80::/10).")
    )
    ssh_authorized_keys: tuple[SshPublicKey, ...] = field(
        metadata=_doc("SSH public keys allowed to log in as the admin user.", min_items=1)
    )
    mycelium_peers: tuple[PeerEndpoint, ...] = field(
        default=(),
        metadata=_doc("Extra Mycelium peers beyond the other nodes, e.g. tcp://[2001:db8::1]:9651."),
    )
    mac: MacAddress | None = field(
        default=None, metadata=_doc("MAC address of the uplink; network-config matches the NIC by it.")
    )
    interface: InterfaceName | None = field(
        default=None,
        metadata=_doc(
            "Name of the uplink: the name given to the NIC matched by mac, else its kernel name (eth0)."
        ),
    )

    @property
    def uplink(self) -> str:
        return self.interface or ("uplink" if self.mac else "eth0")


@dataclass(frozen=True)
class Retention:
    """How many snapshots to keep, as restic's forget counts: the newest of each of the last N
    days, ISO weeks and months that have one (in UTC); a snapshot any rule keeps stays."""

    daily: int = field(default=7, metadata=_doc("Days to keep a snapshot of.", minimum=0))
    weekly: int = field(
        default=4, metadata=_doc("Weeks (Monday to Sunday) to keep a snapshot of.", minimum=0)
    )
    monthly: int = field(default=12, metadata=_doc("Months to keep a snapshot of.", minimum=0))


def _local_retention() -> Retention:
    return Retention(daily=7, weekly=8, monthly=24)


@dataclass(frozen=True)
class Backups:
    """Retention of the backups: on the backup node, and on the operator's machine."""

    retention: Retention = field(
        default_factory=Retention, metadata=_doc("On the backup node (its rotation CronJob).")
    )
    local_retention: Retention = field(
        default_factory=_local_retention,
        metadata=_doc(
            "On the operator's machine, for `meshseed backup pull` (daily 7, weekly 8, monthly 24)."
        ),
    )


# Tutor's "full" set at the pinned release: discussions, the default theme, and the
# micro-frontends that the courseware, Studio's authoring and the learner's pages now are.
DEFAULT_TUTOR_PLUGINS = ("forum", "indigo", "mfe")
# Courseware and Studio's authoring exist only as MFEs in this Open edX release.
REQUIRED_TUTOR_PLUGINS = ("mfe",)

# Two operators' public resolvers, each reachable over IPv6: Quad9 and Cloudflare.
DEFAULT_RESOLVERS = ("2620:fe::fe", "2606:4700:4700::1111")


@dataclass(frozen=True)
class Downloads:
    """How nodes fetch the pinned k3s and Mycelium when the build is not --airgap. Their
    upstream URLs (GitHub) have no IPv6 address, so an IPv6-only node needs one of these."""

    mirror: HttpUrl | None = field(
        default=None,
        metadata=_doc(
            "A mirror of the pinned files, reachable over IPv6: each URL becomes <mirror>/<host>/<path>, "
            "as `meshseed build --artifact-mirror` fetches them."
        ),
    )
    nat64: bool = field(
        default=False,
        metadata=_doc("The nodes' network has NAT64, and `resolvers` answer with DNS64 addresses."),
    )
    ipv4: bool = field(
        default=False, metadata=_doc("The nodes have an IPv4 path out, set up outside meshseed.")
    )


@dataclass(frozen=True)
class Alerts:
    """Who hears from Alertmanager, and how."""

    email: EmailAddress | None = field(
        default=None,
        metadata=_doc(
            "The operator's address; mail goes out through the cluster's SMTP relay "
            "(default: postmaster@<domain>, which RFC 5321 requires every mail domain to have)."
        ),
    )
    webhook: HttpUrl | None = field(
        default=None,
        metadata=_doc(
            "Also POST every alert here (Alertmanager's webhook format), e.g. a chat bridge or a "
            "dead man's switch that expects the Watchdog alert."
        ),
    )


@dataclass(frozen=True)
class Site:
    """A whole site: one cluster, its names and its nodes."""

    cluster: Label = field(metadata=_doc("Name of the cluster; an RFC 1123 label."))
    domain: DnsName = field(metadata=_doc("DNS zone of the site; the LMS and Studio hosts lie in it."))
    lms_host: DnsName = field(metadata=_doc("Host name of the Open edX LMS."))
    studio_host: DnsName = field(metadata=_doc("Host name of Open edX Studio (the CMS)."))
    nodes: tuple[Node, ...] = field(
        metadata=_doc("The machines: an odd number (3 or more) of servers and one backup node.", min_items=1)
    )
    mfe_host: DnsName | None = field(
        default=None,
        metadata=_doc("Host name of the micro-frontends (default: apps.<lms_host>, as Tutor's MFE_HOST)."),
    )
    tutor_plugins: tuple[Label, ...] = field(
        default=DEFAULT_TUTOR_PLUGINS,
        metadata=_doc(
            "Tutor plugins Open edX is rendered with, each pinned in pyproject and its images in "
            "images/upstream.yaml (default: forum, indigo, mfe; mfe is required).",
            min_items=1,
        ),
    )
    nameservers: tuple[DnsName, ...] = field(
        default=(),
        metadata=_doc(
            "Authoritative nameservers of the domain; with them, dist/dns/<domain>.zone is written."
        ),
    )
    resolvers: tuple[IPv6Address, ...] = field(
        default=tuple(ipaddress.IPv6Address(address) for address in DEFAULT_RESOLVERS),
        metadata=_doc(
            "DNS resolvers the nodes and the pods use, by IPv6 address (default: Quad9 2620:fe::fe "
            "and Cloudflare 2606:4700:4700::1111).",
            min_items=1,
        ),
    )
    downloads: Downloads = field(
        default_factory=Downloads,
        metadata=_doc("How nodes reach the pinned files without --airgap: a mirror, NAT64 or IPv4."),
    )
    alerts: Alerts = field(
        default_factory=Alerts,
        metadata=_doc("Where alerts go: an operator address (by email) and an optional webhook."),
    )
    backups: Backups = field(
        default_factory=Backups, metadata=_doc("Backup retention (defaults: daily 7, weekly 4, monthly 12).")
    )
    bootstrapped: bool = field(
        default=False,
        metadata=_doc(
            "The cluster exists: no seed initialises one any more, and the first server's joins the "
            "second (set it once the cluster is up; `meshseed replace` sets it)."
        ),
    )
    source: Path = field(default=Path("site.yaml"), compare=False, metadata={"internal": True})
    # What loading found suspicious but allowed (`file:line: key: message`), for the commands to print.
    warnings: tuple[str, ...] = field(default=(), compare=False, metadata={"internal": True})

    @property
    def apps_host(self) -> str:
        """Where the browser finds the micro-frontends."""
        return self.mfe_host or f"apps.{self.lms_host}"

    @property
    def browser_hosts(self) -> tuple[str, ...]:
        """Every host a browser is sent to: each needs DNS, an edge route and a certificate.
        Besides the LMS, Studio and the MFEs, Tutor sends browsers to the LMS's preview
        host (Studio's "View live"), to Meilisearch (course search asks it directly) and to
        the store of uploaded files (render/media.py: public files and signed URLs)."""
        return (
            self.lms_host,
            self.studio_host,
            self.apps_host,
            f"preview.{self.lms_host}",
            f"meilisearch.{self.lms_host}",
            f"files.{self.lms_host}",
        )

    def with_role(self, role: Role) -> tuple[Node, ...]:
        return tuple(node for node in self.nodes if node.role is role)

    @property
    def servers(self) -> tuple[Node, ...]:
        return self.with_role(Role.SERVER)
