"""The archive of our images one node role runs: an OCI image layout in one tar file.

k3s imports every archive in /var/lib/rancher/k3s/agent/images/ when it starts. Nothing
serves our images (their names are under meshseed.local), so this archive is how they reach
a node: in the role's disk image, on the air-gap payload, or on the node's seed disk, from
where node-setup puts it in place before k3s starts. It is written like an air-gap bundle
(builder/oci/bundle.py): each image under its name and its name by digest, which is how the
manifests refer to it. Not compressed: the layers in it are gzipped already.
"""

from __future__ import annotations

from builder.det.tarfmt import write_members
from builder.store.derivation import BuildContext, Derivation

OWN_ARCHIVE_PREFIX = "own-images-"
OWN_ARCHIVE_DIST = "own-images"


def own_archive_file(role: str) -> str:
    """The file name, in the store, in dist/own-images/ and in k3s's images folder."""
    return f"{role}-own.tar"


def own_archive_derivation(role: str, images: list[Derivation], epoch: int) -> Derivation:
    """`images`: the derivations of our images that workloads on `role` run."""
    return Derivation(
        name=f"{OWN_ARCHIVE_PREFIX}{role}",
        build=build_own_archive,
        inputs={"role": role, "file": own_archive_file(role), "epoch": epoch},
        deps=tuple(sorted(images, key=lambda image: image.name)),
        dist_path=OWN_ARCHIVE_DIST,
    )


def build_own_archive(ctx: BuildContext) -> None:
    from builder.oci.bundle import archive_members  # noqa: PLC0415 - httpx loads only when fetching

    members = archive_members([ctx.dep(dep.name) for dep in ctx.derivation.deps])
    with ctx.open_output(ctx.inputs["file"]) as out:
        write_members(out, members, mtime=ctx.inputs["epoch"])
