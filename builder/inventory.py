"""The public facts about each node, as `meshseed nodes --json` and dist/nodes.json give them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from builder.mycelium import MyceliumIdentity, identity_from_secret
from builder.secrets import Purpose, SecretDeriver
from builder.site import Node, Site


def mycelium_identity(deriver: SecretDeriver, node_name: str) -> MyceliumIdentity:
    return identity_from_secret(deriver.derive(Purpose.MYCELIUM_KEY, node_name).raw)


def node_facts(site: Site) -> list[dict[str, str]]:
    """What the inventory needs from the site: no more, so other edits do not touch it."""
    return [_facts(node) for node in site.nodes]


def _facts(node: Node) -> dict[str, str]:
    return {"name": node.name, "role": node.role.value, "public_ipv6": str(node.public_ipv6.ip)}


def node_records(facts: Iterable[Mapping[str, str]], deriver: SecretDeriver) -> list[dict[str, Any]]:
    """One record per node, sorted by name; nothing secret is in them."""
    records = []
    for fact in sorted(facts, key=lambda fact: fact["name"]):
        identity = mycelium_identity(deriver, fact["name"])
        records.append(
            {
                **fact,
                "mycelium_public_key": identity.public_key.hex(),
                "overlay_address": str(identity.overlay_address),
                "overlay_subnet": str(identity.overlay_subnet),
            }
        )
    return records
