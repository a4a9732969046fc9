"""dist/dns/<domain>.zone: the site's zone, with every host a browser is sent to (LMS,
Studio, the MFEs) round-robin over the server nodes' public addresses (each server runs
Caddy), and a record per node."""

from __future__ import annotations

import time
from typing import Any

from builder.site import Role, Site
from builder.store.derivation import BuildContext, Derivation

TTL = 300
# refresh, retry, expire and negative-caching TTL, as RFC 1912 suggests for a small zone.
SOA_TIMERS = (3600, 900, 1209600, 300)


def _relative(name: str, domain: str) -> str:
    return "@" if name == domain else name.removesuffix("." + domain)


def zone_inputs(site: Site, epoch: int) -> dict[str, Any]:
    servers = [str(node.public_ipv6.ip) for node in site.nodes if node.role is Role.SERVER]
    records = [(_relative(host, site.domain), address) for host in site.browser_hosts for address in servers]
    records += [(node.name, str(node.public_ipv6.ip)) for node in site.nodes]
    return {
        "domain": site.domain,
        "nameservers": list(site.nameservers),
        "records": [list(record) for record in records],
        # YYYYMMDDnn from the build time: fits in 32 bits and grows with SOURCE_DATE_EPOCH.
        "serial": int(time.strftime("%Y%m%d00", time.gmtime(epoch))),
    }


def zone_derivation(site: Site, epoch: int) -> Derivation:
    return Derivation(name="dns-zone", build=build_zone, inputs=zone_inputs(site, epoch), dist_path="dns")


def build_zone(ctx: BuildContext) -> None:
    domain, nameservers = ctx.inputs["domain"], ctx.inputs["nameservers"]
    width = max(len(name) for name, _ in ctx.inputs["records"]) + 2
    lines = [
        f"; {domain}: written by meshseed. The LMS, Studio and MFE hosts name every server node.",
        f"$ORIGIN {domain}.",
        f"$TTL {TTL}",
        f"{'@':<{width}}IN SOA {nameservers[0]}. hostmaster.{domain}. "
        f"( {ctx.inputs['serial']} {' '.join(map(str, SOA_TIMERS))} )",
        *(f"{'@':<{width}}IN NS {server}." for server in nameservers),
        *(f"{name:<{width}}IN AAAA {address}" for name, address in ctx.inputs["records"]),
    ]
    ctx.write(f"{domain}.zone", "\n".join(lines) + "\n")
