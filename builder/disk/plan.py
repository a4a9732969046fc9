"""Plan the disk images (--disks): one root file system, an image per role, and per node
the recipe that joins its role's image with its seed."""

from __future__ import annotations

from collections.abc import Mapping

from builder.artifacts import Downloader
from builder.debian.package import PinnedClosure
from builder.disk.node import image_derivation, seed_slot_derivation
from builder.disk.role import role_disk_derivation
from builder.disk.rootfs import rootfs_derivation
from builder.errors import MeshseedError
from builder.lock.disk_spec import LOCK_NAME
from builder.render.node import STAGED
from builder.site import Site
from builder.store.derivation import Derivation


def plan_disks(
    site: Site,
    *,
    debian: Mapping[str, PinnedClosure],
    artifacts: Downloader,
    binaries: Mapping[str, Derivation],
    images: Mapping[str, tuple[Derivation, ...]],
    seeds: Mapping[str, Derivation],
    epoch: int,
) -> list[Derivation]:
    """`binaries`: the pinned files' derivations by lock name; `images`: role -> the
    archives k3s imports on it (its bundle, our images); `seeds`: node -> its seed."""
    closure = debian.get(LOCK_NAME)
    if closure is None:
        raise MeshseedError(f"images.lock: debian.{LOCK_NAME}: is missing", hint="run `meshseed lock`")
    rootfs = rootfs_derivation(closure, epoch, artifacts)
    staged = {STAGED[name]: binaries[name] for name in sorted(STAGED)}
    derivations = [rootfs]
    for role in sorted({node.role.value for node in site.nodes}):
        role_disk = role_disk_derivation(role, rootfs, staged, images.get(role, ()), epoch)
        derivations += [role_disk, image_derivation(f"disk-{role}", role_disk, None, "disks")]
        for node in (node for node in site.nodes if node.role.value == role):
            slot = seed_slot_derivation(node.name, seeds[node.name])
            derivations += [
                slot,
                image_derivation(f"disk-node-{node.name}", role_disk, slot, f"nodes/{node.name}"),
            ]
    return derivations
