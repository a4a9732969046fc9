"""Every URL the rendered configuration hands to a browser must work.

A URL on one of the site's hosts needs three things: a DNS record (the zone lists the
site's browser hosts), a route in the edge Caddy and a certificate from the issuer. The
URLs are read from what the build rendered (Open edX's settings, the MFEs' config, any
manifest), the routes and certificate names from the two Caddyfiles it rendered, so a
setting that points somewhere nothing serves fails the build, named.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from builder.errors import MeshseedError

_URL = re.compile(r"\bhttps?://([A-Za-z0-9][A-Za-z0-9.-]*[A-Za-z0-9])(?::\d+)?(?:/[^\s\"'<>`\\]*)?")
# A Caddyfile's site address line at the top level: "a.example.org, b.example.org {".
_SITE_LINE = re.compile(r"^([^\s{}#][^{}\n]*?)[ \t]*\{[ \t]*$", re.MULTILINE)
_HOST_MATCHER = re.compile(r"^\s*@\S+\s+host\s+(.+)$", re.MULTILINE)


@dataclass(frozen=True)
class Edge:
    """What the site serves browsers: DNS names, routed hosts, certified hosts."""

    dns: frozenset[str]
    routes: frozenset[str]
    certificates: frozenset[str]

    @classmethod
    def of(cls, dns: Iterable[str], edge_caddyfile: str, issuer_caddyfile: str) -> Edge:
        return cls(
            frozenset(dns),
            frozenset(host for line in _HOST_MATCHER.findall(edge_caddyfile) for host in line.split()),
            frozenset(_tls_sites(issuer_caddyfile)),
        )


def _tls_sites(caddyfile: str) -> list[str]:
    """Hosts of the site blocks Caddy gets certificates for (no scheme, no port)."""
    hosts = []
    for line in _SITE_LINE.findall(caddyfile):
        for address in (part.strip() for part in line.split(",")):
            if address and "://" not in address and not address.startswith(":"):
                hosts.append(address)
    return hosts


def site_urls(texts: Iterable[str], domain: str) -> dict[str, str]:
    """URL -> host, for every URL in `texts` on the site's domain."""
    urls = {}
    for text in texts:
        for match in _URL.finditer(text):
            host = match.group(1).lower()
            if host == domain or host.endswith("." + domain):
                urls[match.group(0)] = host
    return urls


def check_browser_urls(texts: Iterable[str], domain: str, edge: Edge) -> None:
    """Refuse a URL on the site's domain that DNS, the edge or the certificates miss."""
    problems = []
    for url, host in sorted(site_urls(texts, domain).items()):
        missing = [
            what
            for what, names in (
                ("DNS record", edge.dns),
                ("edge route", edge.routes),
                ("certificate", edge.certificates),
            )
            if host not in names
        ]
        if missing:
            problems.append(f"{url}: no {', no '.join(missing)} for {host}")
    if problems:
        raise MeshseedError(
            "manifests: a browser would be sent where nothing serves it:\n  " + "\n  ".join(problems),
            hint="every host a setting names must be one of the site's browser hosts (Site.browser_hosts)",
        )
