"""The nodes' root file system, as a tarball: the pinned closure installed by mmdebstrap.

Maintainer scripts run (in mmdebstrap's chroot) because a booting system needs what they
make: users, enabled units, the initramfs, the alternatives. The .debs come from the blob
store, checked against images.lock, through a flat archive holding only them; mmdebstrap's
output repeats byte for byte under a fixed SOURCE_DATE_EPOCH. What a build machine would
leave in it (its host name and resolver) and what must differ per node (SSH host keys,
which each node's seed sets) is removed.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from builder.artifacts import Downloader
from builder.debian.archive import ArchivedDeb, write_flat_archive
from builder.debian.fetch import fetch_debs
from builder.debian.package import PinnedClosure
from builder.store.derivation import BuildContext, Derivation
from builder.tools import mmdebstrap
from builder.tools.dpkg_query import installed_version

ROOTFS_FILE = "rootfs.tar"
SUITE = "bookworm"
# The machine-specific files mmdebstrap copies from the build host or packages generate.
HOOKS = (
    'rm -f "$1"/etc/ssh/ssh_host_*_key "$1"/etc/ssh/ssh_host_*_key.pub',
    'rm -f "$1/etc/hostname" "$1/etc/resolv.conf" "$1/initrd.img.old" "$1/vmlinuz.old"',
    # The built-in locale, as Debian's cloud images set it: cloud-init then keeps it and
    # generates none (it would ask for en_US.UTF-8, which nothing here has generated).
    'echo LANG=C.UTF-8 > "$1/etc/default/locale"',
    # A node's apt sources for later updates: Debian's own, not the build's local archive
    # (whose path differs from build to build).
    'printf "deb http://deb.debian.org/debian bookworm main\\n'
    "deb http://deb.debian.org/debian bookworm-updates main\\n"
    'deb http://deb.debian.org/debian-security bookworm-security main\\n" > "$1/etc/apt/sources.list"',
)
CODE = ("disk/rootfs.py", "debian", "tools/mmdebstrap.py", "tools/run.py")


def rootfs_derivation(closure: PinnedClosure, epoch: int, artifacts: Downloader) -> Derivation:
    return Derivation(
        name="disk-rootfs",
        build=build_rootfs,
        inputs={
            "suite": SUITE,
            "packages": [dataclasses.asdict(package) for package in closure.packages],
            "hooks": list(HOOKS),
            "epoch": epoch,
            "tools": {"mmdebstrap": installed_version("mmdebstrap"), "dpkg": installed_version("dpkg")},
        },
        fetcher=artifacts,
        code=CODE,
    )


def build_rootfs(ctx: BuildContext) -> None:
    packages = ctx.inputs["packages"]
    paths = fetch_debs(ctx, packages)
    debs = [
        ArchivedDeb(p["name"], p["version"], p["architecture"], p["sha256"], path)
        for p, path in zip(packages, paths, strict=True)
    ]
    with tempfile.TemporaryDirectory(prefix="meshseed-archive-", dir=ctx.out.parent) as scratch:
        source = write_flat_archive(debs, Path(scratch))
        (ctx.out).mkdir(parents=True, exist_ok=True)
        mmdebstrap.install_tarball(
            suite=ctx.inputs["suite"],
            source=source,
            packages=[p["name"] for p in packages],
            target=ctx.out / ROOTFS_FILE,
            epoch=ctx.inputs["epoch"],
            hooks=ctx.inputs["hooks"],
        )
