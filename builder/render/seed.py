"""The cloud-init NoCloud seed of one node: user-data, meta-data, network-config, seed.iso."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from builder.cluster.component import BACKUP_PATH, METRICS_PATH
from builder.det.compress import gzip_bytes
from builder.det.iso9660 import IsoFile, write_iso_to
from builder.det.yamlfmt import dump_yaml, load_yaml
from builder.errors import MeshseedError
from builder.lock import Lock
from builder.render.firewall import firewall_inputs
from builder.render.manifest_rules import SECRET_SUFFIX
from builder.render.node import (
    BAKED_PAYLOAD,
    LOG_FILE,
    PAYLOAD_LABEL,
    REFUSED_STATUS,
    RESOLV_CONF,
    SETUP_DONE,
    NodePlan,
    base_inputs,
    k3s_settings,
    mycelium_inputs,
    peers_of,
    pinned_files,
    read_mesh,
    single_file,
)
from builder.render.templates import environment, render
from builder.secrets import Purpose, SecretDeriver
from builder.site import Node, Role, Site
from builder.ssh_host_keys import host_key
from builder.store.derivation import BuildContext, Derivation

SEED_FILES = ("meta-data", "network-config", "user-data")
# Files user-data carries, rendered first: context name -> template.
HELPERS = {
    "node_setup": "node-setup.sh",
    "wait_for_overlay": "wait-for-overlay.sh",
    "mycelium_service": "mycelium.service",
    "node_setup_service": "node-setup.service",
    "firewall": "firewall.nft",
    "firewall_service": "firewall.service",
}
SEED_LABEL = "cidata"
# Where node-setup takes the archive of our images from (its `place` function's FROM).
ARCHIVE_ON_PAYLOAD = "payload"
ARCHIVE_ON_SEED = "seed"
# user-data carries the node's secrets; the ISO holds user-data.
PRIVATE_FILES = frozenset({"user-data", "seed.iso"})


def seed_derivation(
    site: Site,
    node: Node,
    *,
    epoch: int,
    templates: Path,
    deriver: SecretDeriver,
    plan: NodePlan,
    lock: Lock | None,
    bundle: Derivation | None,
    mesh: Derivation,
    manifests: Derivation | None = None,
    archive: Derivation | None = None,
) -> Derivation:
    """A seed; with a lock that pins k3s and Mycelium, one that also joins the cluster.
    `archive`: the archive of our images the node's role runs, which node-setup puts where
    k3s imports it: from the payload disk with `bundle` (air gap), else from the seed disk,
    which then carries it."""
    inputs = base_inputs(site, node, epoch)
    inputs["backup_path"] = BACKUP_PATH if node.role is Role.BACKUP else None
    inputs["metrics_path"] = METRICS_PATH if node.role is Role.BACKUP else None
    # Every server applies the same manifests; agents and the backup node apply none.
    carried = manifests if lock is not None and node.role is Role.SERVER else None
    own = archive if lock is not None else None
    names: tuple[str, ...] = SEED_FILES
    if lock is not None:
        names = SEED_FILES + tuple(HELPERS.values())
        inputs.update(
            k3s=k3s_settings(site, node, plan),
            mycelium=mycelium_inputs(site, node, plan),
            files=pinned_files(lock, site.downloads.mirror),
            resolv_conf=RESOLV_CONF,
            airgap=bundle is not None,
            bundle=bundle.name if bundle is not None else None,
            mesh=mesh.name,
            log=LOG_FILE,
            done_marker=SETUP_DONE,
            refused_status=REFUSED_STATUS,
            payload_label=PAYLOAD_LABEL,
            baked_payload=BAKED_PAYLOAD,
            manifests=carried.name if carried is not None else None,
            firewall=firewall_inputs(node),
            own_archive=_own_archive(own, on_payload=bundle is not None),
            seed_label=SEED_LABEL,
        )
    return Derivation(
        name=f"seed-{node.name}",
        build=build_seed,
        inputs=inputs,
        deps=tuple(
            dep for dep in (bundle, mesh if lock is not None else None, carried, own) if dep is not None
        ),
        sources={f"{name}.j2": templates / f"{name}.j2" for name in names},
        secrets=deriver if lock is not None else None,
        dist_path=f"nodes/{node.name}",
    )


def _own_archive(archive: Derivation | None, *, on_payload: bool) -> dict[str, str] | None:
    if archive is None:
        return None
    return {"derivation": archive.name, "source": ARCHIVE_ON_PAYLOAD if on_payload else ARCHIVE_ON_SEED}


def join_tokens(ctx: BuildContext, *, server: bool) -> dict[str, str]:
    """Servers hold the server token and the agent token they accept; agents and the
    backup node hold the agent token alone, so none of them can join as a server."""
    agent = ctx.secrets.derive(Purpose.K3S_AGENT_TOKEN).text
    if server:
        return {"token": ctx.secrets.derive(Purpose.K3S_TOKEN).text, "agent-token": agent}
    return {"token": agent}


def _context(ctx: BuildContext, env: Any) -> dict[str, Any]:
    """The template context: the inputs, plus the secrets and the rendered helper files."""
    context: dict[str, Any] = dict(ctx.inputs)
    if "k3s" not in context:
        return {**context, "k3s": None, "manifests": []}
    context["manifests"] = _manifests(ctx.dep(context["manifests"])) if context["manifests"] else []
    pinned = list(context.pop("files"))
    if context["bundle"]:
        bundle = single_file(ctx.dep(context["bundle"]))
        pinned.append({"name": bundle.staged_name, "url": "payload", "sha256": bundle.sha256})
        context["bundle_file"] = bundle.staged_name
    if context["own_archive"]:
        archive = single_file(ctx.dep(context["own_archive"]["derivation"]))
        context["own_archive"] = {**context["own_archive"], "name": archive.path, "sha256": archive.sha256}
    mesh = read_mesh(ctx.dep(context["mesh"]))
    context["overlays"] = mesh["overlays"]
    settings = {**context["k3s"]["settings"], **join_tokens(ctx, server=context["k3s"]["server"])}
    if context["k3s"]["server"]:
        settings["tls-san"] = mesh["tls_san"]
    peers = peers_of(mesh, context["node"]["name"], context["mycelium"]["extra_peers"])
    host = host_key(ctx.secrets, context["node"]["name"])
    context["ssh_host_key"] = {"private": host.private_openssh, "public": host.public}
    key = ctx.secrets.derive(Purpose.MYCELIUM_KEY, context["node"]["name"]).raw
    context.update(
        pinned=pinned,
        k3s={**context["k3s"], "config": dump_yaml(settings)},
        mycelium={**context["mycelium"], "peers": peers, "key_b64": base64.b64encode(key).decode()},
    )
    context["helpers"] = {
        key: render(env, f"{name}.j2", context, origin=f"cloud-init/{name}.j2")
        for key, name in HELPERS.items()
    }
    return context


def _manifests(directory: Path) -> list[dict[str, str]]:
    """The manifest files, gzipped for user-data; Secrets stay readable by root only."""
    return [
        {
            "name": path.name,
            "mode": "0600" if path.stem.endswith(SECRET_SUFFIX) else "0644",
            "gz_b64": base64.b64encode(gzip_bytes(path.read_bytes())).decode(),
        }
        for path in sorted(directory.glob("*.yaml"))
    ]


def build_seed(ctx: BuildContext) -> None:
    env = environment(tuple((name, ctx.source(name).decode()) for name in sorted(ctx.derivation.sources)))
    context = _context(ctx, env)
    rendered: dict[str, bytes] = {}
    for name in SEED_FILES:
        text = render(env, f"{name}.j2", context, origin=f"cloud-init/{name}.j2")
        try:
            load_yaml(text)
        except yaml.MarkedYAMLError as error:
            # Only the position: the offending text may be a secret.
            mark = error.problem_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise MeshseedError(f"cloud-init/{name}.j2 rendered invalid YAML{where}") from None
        except yaml.YAMLError:
            raise MeshseedError(f"cloud-init/{name}.j2 rendered invalid YAML") from None
        rendered[name] = text.encode()
        ctx.write(name, rendered[name], private=name in PRIVATE_FILES)
    iso_files = {
        name: IsoFile(name, data, 0o600 if name in PRIVATE_FILES else 0o644)
        for name, data in rendered.items()
    }
    iso_files.update(_carried_archive(ctx))
    with ctx.open_output("seed.iso", private=True) as out:
        write_iso_to(out, iso_files, label=SEED_LABEL, epoch=ctx.inputs["epoch"])


def _carried_archive(ctx: BuildContext) -> dict[str, IsoFile]:
    """The archive of our images, on the seed disk when there is no payload disk for it."""
    own = ctx.inputs.get("own_archive")
    if not own or own["source"] != ARCHIVE_ON_SEED:
        return {}
    entry = ctx.dep(own["derivation"])
    archive = single_file(entry)
    return {archive.path: IsoFile(archive.path, entry / archive.path)}
