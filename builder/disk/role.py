"""A role's bootable disk image: the nodes' root file system plus what the role runs.

The root gets the pinned k3s, its install script and Mycelium as node-setup's local
payload (/usr/lib/meshseed/payload: node-setup checks and installs them from there, as
from a payload disk, and downloads nothing), the role's air-gap bundle and our images
where k3s imports images at start (hard links to the payload's copies: one copy of the
bytes on the disk), and the datasource setting that makes cloud-init read only the seed.
The output is the image in three zstd frames (see layout.py), each with the sha256 of
its raw bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from builder.det.compress import compressor_versions, zstd_writer
from builder.det.jsonfmt import canonical_json
from builder.disk.layout import ESP_SIZE, Layout, fat_volume_id
from builder.disk.rootfs import ROOTFS_FILE
from builder.errors import MeshseedError
from builder.render.node import BAKED_PAYLOAD, single_file
from builder.store.derivation import BuildContext, Derivation
from builder.tools import e2fs, fat, sfdisk
from builder.tools.dpkg_query import installed_version

PAYLOAD_DIR = BAKED_PAYLOAD.lstrip("/")
K3S_IMAGES_DIR = "var/lib/rancher/k3s/agent/images"
PIECES = ("head", "slot", "tail")
LAYOUT_FILE = "layout.json"
SYSTEMD_BOOT = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
# Room to spare on the root until cloud-init's growpart and resize2fs give it the disk.
ROOT_HEADROOM = 256 << 20
CODE = (
    "disk/role.py",
    "disk/layout.py",
    "tools/e2fs.py",
    "tools/fat.py",
    "tools/sfdisk.py",
    "det/compress.py",
)
DATASOURCE = (
    "# meshseed: the node's seed is its only datasource; nothing is asked of a network.\n"
    "datasource_list: [NoCloud, None]\n"
)


def piece_file(piece: str) -> str:
    return f"{piece}.zst"


def role_disk_derivation(
    role: str,
    rootfs: Derivation,
    binaries: Mapping[str, Derivation],
    images: tuple[Derivation, ...],
    epoch: int,
) -> Derivation:
    """`binaries`: staged name (k3s, k3s-install.sh, mycelium.tar.gz) -> its derivation;
    `images`: derivations of the archives k3s imports (the role's bundle, our own images)."""
    return Derivation(
        name=f"disk-role-{role}",
        build=build_role_disk,
        inputs={
            "role": role,
            "epoch": epoch,
            # Shared with the seeds' node-setup (render/node.py), which is not in CODE.
            "payload_dir": PAYLOAD_DIR,
            "binaries": {name: dep.name for name, dep in sorted(binaries.items())},
            "images": [dep.name for dep in images],
            "tools": {
                **compressor_versions(),
                **{
                    package: installed_version(package)
                    for package in ("e2fsprogs", "dosfstools", "mtools", "fdisk")
                },
            },
        },
        deps=tuple(sorted({rootfs, *binaries.values(), *images}, key=lambda d: d.name)),
        code=CODE,
    )


def unpack_rootfs(archive: Path, root: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(root, numeric_owner=True, filter="fully_trusted")
        # tarfile sets no times on the symbolic links it makes, so theirs would be the
        # moment of unpacking, which mke2fs -d copies into the image.
        for member in tar.getmembers():
            if member.issym():
                os.utime(root / member.name, (member.mtime, member.mtime), follow_symlinks=False)


def _pin_parents(root: Path, relative: str, epoch: int) -> None:
    """Adding a name to a directory sets its mtime to now, which mke2fs -d would copy."""
    for parent in PurePosixPath(relative).parents:
        if str(parent) != ".":
            os.utime(root / parent, (epoch, epoch))


def _make_parents(root: Path, relative: str) -> None:
    """The folders above `relative`, made 0755 whatever the umask (mke2fs copies modes)."""
    for parent in reversed(PurePosixPath(relative).parents):
        folder = root / parent
        if str(parent) != "." and not folder.exists():
            folder.mkdir()
            folder.chmod(0o755)


def _add(root: Path, relative: str, data: bytes | Path, mode: int, epoch: int) -> None:
    target = root / relative
    _make_parents(root, relative)
    if isinstance(data, Path):
        shutil.copyfile(data, target)
    else:
        target.write_bytes(data)
    target.chmod(mode)
    os.utime(target, (epoch, epoch))
    _pin_parents(root, relative, epoch)


def _link(root: Path, existing: str, relative: str, epoch: int) -> None:
    """A second name for a file of the image: one copy of its bytes on the disk."""
    target = root / relative
    _make_parents(root, relative)
    os.link(root / existing, target)
    _pin_parents(root, relative, epoch)


def _stage_role(ctx: BuildContext, root: Path, layout_uuid: str) -> None:
    epoch = ctx.inputs["epoch"]
    _add(
        root, "etc/fstab", f"PARTUUID={layout_uuid} / ext4 rw,errors=remount-ro 0 1\n".encode(), 0o644, epoch
    )
    _add(root, "etc/cloud/cloud.cfg.d/90-meshseed-datasource.cfg", DATASOURCE.encode(), 0o644, epoch)
    for name, dep in ctx.inputs["binaries"].items():
        stored = single_file(ctx.dep(dep))
        executable = name in {"k3s", "k3s-install.sh"}
        _add(root, f"{PAYLOAD_DIR}/{name}", ctx.dep(dep) / stored.path, 0o755 if executable else 0o644, epoch)
    for dep in ctx.inputs["images"]:
        stored = single_file(ctx.dep(dep))
        name = stored.staged_name if dep.startswith("airgap-") else Path(stored.path).name
        _add(root, f"{PAYLOAD_DIR}/{name}", ctx.dep(dep) / stored.path, 0o644, epoch)
        _link(root, f"{PAYLOAD_DIR}/{name}", f"{K3S_IMAGES_DIR}/{name}", epoch)


def _tree_size(root: Path) -> int:
    seen: set[int] = set()
    total = 0
    for directory, _, files in os.walk(root):
        for name in [*files, "."]:
            stat = (Path(directory) / name).lstat()
            if stat.st_ino not in seen:
                seen.add(stat.st_ino)
                total += max(stat.st_blocks * 512, 4096)
    return total


def _boot_files(root: Path) -> dict[str, Path]:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise MeshseedError(f"the root file system holds {len(kernels)} kernels, not one")
    version = kernels[0].name.removeprefix("vmlinuz-")
    return {
        "EFI/BOOT/BOOTX64.EFI": root / SYSTEMD_BOOT,
        "vmlinuz": kernels[0],
        "initrd.img": root / "boot" / f"initrd.img-{version}",
    }


def _loader_files(scratch: Path, layout: Layout, epoch: int) -> dict[str, Path]:
    options = f"root=PARTUUID={layout.uuid('root')} ro console=tty0 console=ttyS0,115200"
    texts = {
        "loader/loader.conf": "default meshseed.conf\ntimeout 0\neditor no\n",
        "loader/entries/meshseed.conf": (
            f"title meshseed {layout.role}\nlinux /vmlinuz\ninitrd /initrd.img\noptions {options}\n"
        ),
    }
    files = {}
    for name, text in texts.items():
        path = scratch / "loader-files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (epoch, epoch))
        files[name] = path
    return files


def _write_at(disk: BinaryIO, offset: int, source: Path) -> None:
    disk.seek(offset)
    with source.open("rb") as stream:
        shutil.copyfileobj(stream, disk, 1 << 20)


def _compress_range(ctx: BuildContext, disk: Path, start: int, end: int, name: str) -> str:
    """Compress bytes [start, end) of `disk` into the output file `name`; their sha256."""
    digest = hashlib.sha256()
    with disk.open("rb") as stream, ctx.open_output(name) as out, zstd_writer(out) as compressed:
        stream.seek(start)
        remaining = end - start
        while remaining:
            chunk = stream.read(min(remaining, 4 << 20))
            digest.update(chunk)
            compressed.write(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def build_role_disk(ctx: BuildContext) -> None:
    role = ctx.inputs["role"]
    epoch = ctx.inputs["epoch"]
    with tempfile.TemporaryDirectory(prefix="meshseed-disk-", dir=ctx.out.parent) as scratch_name:
        scratch = Path(scratch_name)
        root = scratch / "root"
        rootfs = next(dep.name for dep in ctx.derivation.deps if dep.name == "disk-rootfs")
        unpack_rootfs(ctx.dep(rootfs) / ROOTFS_FILE, root)
        layout = Layout(role, 0)
        _stage_role(ctx, root, layout.uuid("root"))
        layout = Layout(role, int(_tree_size(root) * 1.1) + ROOT_HEADROOM)
        esp = scratch / "esp.img"
        fat.make_fat(
            esp,
            size=ESP_SIZE,
            label="ESP",
            volume_id=fat_volume_id(role),
            epoch=epoch,
            files={**_boot_files(root), **_loader_files(scratch, layout, epoch)},
        )
        root_image = scratch / "root.img"
        e2fs.make_ext4(
            root_image,
            root,
            size=layout.root_size - layout.root_size % (1 << 20) + (1 << 20),
            label="root",
            uuid=layout.uuid("root-fs"),
            hash_seed=layout.uuid("root-hash-seed"),
            epoch=epoch,
        )
        shutil.rmtree(root)
        disk = scratch / "disk.raw"
        with disk.open("wb") as stream:
            stream.truncate(layout.size)
        sfdisk.write_gpt(disk, layout.sfdisk_script())
        with disk.open("r+b") as stream:
            _write_at(stream, layout.esp_start, esp)
            _write_at(stream, layout.root_start, root_image)
        bounds = {
            "head": (0, layout.seed_start),
            "slot": (layout.seed_start, layout.root_start),
            "tail": (layout.root_start, layout.size),
        }
        pieces: dict[str, Any] = {}
        for piece, (start, end) in bounds.items():
            pieces[piece] = {
                "offset": start,
                "size": end - start,
                "sha256": _compress_range(ctx, disk, start, end, piece_file(piece)),
            }
    ctx.write(LAYOUT_FILE, canonical_json({"role": role, "size": layout.size, "pieces": pieces}))
