"""Air-gap bundles: one archive per node role with exactly the images that role runs.

A bundle is an OCI image layout in a tar (zstd-compressed by default), which k3s
imports from /var/lib/rancher/k3s/agent/images/. Each image keeps its pinned top-level
digest and is named by `io.containerd.image.name`, twice: by its tag and by its digest
(`archive_index`), so pods that refer to it by digest find it without pulling. Blobs
shared by several images are in the archive once. Our own images' archives
(builder/images/archive.py) are written the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from builder.det.compress import compressor_versions, zstd_writer
from builder.det.tarfmt import write_members
from builder.oci.fetch import LAYOUT_VERSION, Descriptor, layout_index
from builder.oci.media import CONTAINERD_NAME
from builder.oci.reference import parse_reference
from builder.store.derivation import BuildContext


def bundle_file(role: str, compression: str) -> str:
    return f"{role}.tar.zst" if compression == "zstd" else f"{role}.tar"


def bundle_inputs(role: str, compression: str, epoch: int) -> dict[str, Any]:
    if compression not in {"zstd", "none"}:
        raise ValueError(f"unknown bundle compression {compression!r}")
    return {"role": role, "compression": compression, "epoch": epoch, "tools": compressor_versions()}


def archive_index(images: list[tuple[str, Descriptor]]) -> str:
    """index.json of an archive for k3s: each image under its name and under its name by
    digest. containerd's CRI looks a pod's image up by exactly the name the pod gives, and a
    tag beside a digest is dropped first, so a pod that names an image by digest finds only
    an image of that name; k3s releases before late 2025 make no such name on import."""
    named: dict[str, Descriptor] = {}
    for name, descriptor in images:
        named[name] = descriptor
        named[f"{parse_reference(name).name}@{descriptor.digest}"] = descriptor
    return layout_index(sorted(named.items()))


def archive_members(layouts: list[Path]) -> dict[str, Path | bytes]:
    """The members of one OCI layout holding every image of `layouts` (as named there),
    each blob once."""
    members: dict[str, Path | bytes] = {}
    images: list[tuple[str, Descriptor]] = []
    for layout in layouts:
        for entry in json.loads((layout / "index.json").read_text())["manifests"]:
            descriptor = Descriptor(entry["mediaType"], entry["digest"], entry["size"])
            images.append((entry["annotations"][CONTAINERD_NAME], descriptor))
        for blob in sorted((layout / "blobs" / "sha256").iterdir()):
            members.setdefault(f"blobs/sha256/{blob.name}", blob)
    members["index.json"] = archive_index(images).encode()
    members["oci-layout"] = LAYOUT_VERSION.encode()
    return members


def build_bundle(ctx: BuildContext) -> None:
    members = archive_members([ctx.dep(dep.name) for dep in ctx.derivation.deps])
    name = bundle_file(ctx.inputs["role"], ctx.inputs["compression"])
    with ctx.open_output(name) as out:
        if ctx.inputs["compression"] == "zstd":
            with zstd_writer(out) as compressed:
                write_members(compressed, members, mtime=ctx.inputs["epoch"])
        else:
            write_members(out, members, mtime=ctx.inputs["epoch"])
