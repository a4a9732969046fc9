"""The air-gap payload of a node role: a read-only ISO disk with every pinned file.

It holds the k3s binary and install script, the Mycelium archive, the role's image
bundle and the archive of our images the role runs (builder/images/archive.py). Seeds pin
the sha256 of each, and node-setup refuses any that differ.
"""

from __future__ import annotations

from typing import Any

from builder.det.iso9660 import IsoFile, write_iso_to
from builder.render.node import PAYLOAD_LABEL, STAGED, single_file
from builder.store.derivation import BuildContext, Derivation

PAYLOAD_FILE = "payload.img"


def payload_derivation(
    role: str,
    nodes: list[str],
    binaries: dict[str, Derivation],
    bundle: Derivation | None,
    epoch: int,
    *,
    archive: Derivation | None = None,
) -> Derivation:
    """`archive`: the archive of our images the role runs, if it runs any."""
    files: dict[str, Any] = {STAGED[name]: binaries[name].name for name in sorted(STAGED)}
    extra = [dep for dep in (bundle, archive) if dep is not None]
    return Derivation(
        name=f"payload-{role}",
        build=build_payload,
        inputs={
            "role": role,
            "files": files,
            "bundle": bundle.name if bundle else None,
            "archive": archive.name if archive else None,
            "epoch": epoch,
        },
        deps=tuple(sorted([*(binaries[name] for name in STAGED), *extra], key=lambda d: d.name)),
        dist_path=f"nodes/{nodes[0]}",
        dist_also=tuple(f"nodes/{name}" for name in nodes[1:]),
    )


def build_payload(ctx: BuildContext) -> None:
    files = {}
    for name, dep in ctx.inputs["files"].items():
        path = ctx.dep(dep) / single_file(ctx.dep(dep)).path
        files[name] = IsoFile(name, path, 0o755 if name in {"k3s", "k3s-install.sh"} else 0o644)
    if ctx.inputs["bundle"]:
        bundle = single_file(ctx.dep(ctx.inputs["bundle"]))
        files[bundle.staged_name] = IsoFile(bundle.staged_name, ctx.dep(ctx.inputs["bundle"]) / bundle.path)
    if ctx.inputs["archive"]:
        archive = single_file(ctx.dep(ctx.inputs["archive"]))
        files[archive.path] = IsoFile(archive.path, ctx.dep(ctx.inputs["archive"]) / archive.path)
    with ctx.open_output(PAYLOAD_FILE) as out:
        write_iso_to(out, files, label=PAYLOAD_LABEL, epoch=ctx.inputs["epoch"])
