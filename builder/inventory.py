"""The public facts about each node, as `meshseed nodes --json` and dist/nodes.json give them."""

from __future__ import annotations

from typing import Any

from builder.mycelium import MyceliumIdentity, identity_from_secret
from builder.secrets import Purpose, SecretDeriver
from builder.site import Node, Site


def mycelium_identity(deriver: SecretDeriver, node: Node) -> MyceliumIdentity:
    return identity_from_secret(deriver.derive(Purpose.MYCELIUM_KEY, node.name).raw)


def node_records(site: Site, deriver: SecretDeriver) -> list[dict[str, Any]]:
    """One record per node, sorted by name; nothing secret is in them."""
    records = []
    for node in sorted(site.nodes, key=lambda node: node.name):
        identity = mycelium_identity(deriver, node)
        records.append(
            {
                "name": node.name,
                "role": node.role.value,
                "public_ipv6": str(node.public_ipv6.ip),
                "mycelium_public_key": identity.public_key.hex(),
                "overlay_address": str(identity.overlay_address),
                "overlay_subnet": str(identity.overlay_subnet),
            }
        )
    return records
