"""The cloud-init NoCloud seed of one node: user-data, meta-data, network-config, seed.iso."""

from __future__ import annotations

from typing import Any

import yaml

from builder.det.iso9660 import IsoFile, write_iso
from builder.det.yamlfmt import load_yaml
from builder.errors import MeshseedError
from builder.render.templates import environment, render
from builder.site import Node, Site
from builder.store.derivation import BuildContext

SEED_FILES = ("meta-data", "network-config", "user-data")
SEED_LABEL = "cidata"
# user-data will carry the node's secrets; the ISO holds user-data.
PRIVATE_FILES = frozenset({"user-data", "seed.iso"})


def seed_inputs(site: Site, node: Node, epoch: int) -> dict[str, Any]:
    """The site values a seed reads. Only these reach the templates."""
    return {
        "epoch": epoch,
        "instance_id": f"{site.cluster}-{node.name}",
        "site": {"cluster": site.cluster, "domain": site.domain},
        "node": {
            "name": node.name,
            "role": node.role.value,
            "fqdn": f"{node.name}.{site.domain}",
            "public_ipv6": str(node.public_ipv6),
            "gateway": str(node.gateway),
            "ssh_authorized_keys": list(node.ssh_authorized_keys),
        },
    }


def build_seed(ctx: BuildContext) -> None:
    env = environment(tuple((f"{name}.j2", ctx.source(f"{name}.j2").decode()) for name in SEED_FILES))
    rendered: dict[str, bytes] = {}
    for name in SEED_FILES:
        text = render(env, f"{name}.j2", ctx.inputs, origin=f"cloud-init/{name}.j2")
        try:
            load_yaml(text)
        except yaml.YAMLError as error:
            raise MeshseedError(f"cloud-init/{name}.j2 rendered invalid YAML: {error}") from None
        rendered[name] = text.encode()
        ctx.write(name, rendered[name], private=name in PRIVATE_FILES)
    iso_files = {
        name: IsoFile(name, data, 0o600 if name in PRIVATE_FILES else 0o644)
        for name, data in rendered.items()
    }
    ctx.write("seed.iso", write_iso(iso_files, label=SEED_LABEL, epoch=ctx.inputs["epoch"]), private=True)
