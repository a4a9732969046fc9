"""Assemble a root filesystem layer from .deb files, without running maintainer scripts.

Each package's data.tar is unpacked to a plain tar first, so members can be read in any
order; the layer is then written sorted by path, with the packages' own modes and owners
but one mtime. Hard links become copies (sorted order could put a link before its
target). The dpkg database (status, and a file list per package) is added so that
scanners see what is installed, as are the users a distroless image needs.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.debian.deb import control_files, unpack_data_tar
from builder.debian.index import parse_deb822
from builder.det.tarfmt import tar_info

NONROOT_UID = 65532
_STATUS_FIRST = ("Package", "Status")


@dataclass(frozen=True)
class Package:
    name: str
    deb: Path


def _normal(name: str) -> str:
    return name.removeprefix("./").rstrip("/")


def _status_stanza(fields: dict[str, str]) -> str:
    ordered = {"Package": fields["Package"], "Status": "install ok installed"}
    ordered.update((key, value) for key, value in fields.items() if key not in _STATUS_FIRST)
    return "".join(f"{key}: {value}\n" for key, value in ordered.items())


def system_files(epoch: int) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """/etc/passwd and /etc/group with root and nonroot, /tmp and nonroot's home."""
    nonroot = f"nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n"
    passwd = "root:x:0:0:root:/root:/sbin/nologin\n" + nonroot
    group = f"root:x:0:\nnonroot:x:{NONROOT_UID}:\n"
    files = {
        "etc/passwd": (
            tar_info("etc/passwd", tarfile.REGTYPE, 0o644, epoch, size=len(passwd)),
            passwd.encode(),
        ),
        "etc/group": (tar_info("etc/group", tarfile.REGTYPE, 0o644, epoch, size=len(group)), group.encode()),
        "tmp": (tar_info("tmp", tarfile.DIRTYPE, 0o1777, epoch), b""),
        "home": (tar_info("home", tarfile.DIRTYPE, 0o755, epoch), b""),
        "home/nonroot": (
            tar_info("home/nonroot", tarfile.DIRTYPE, 0o700, epoch, owner=(NONROOT_UID, NONROOT_UID)),
            b"",
        ),
    }
    return files


def write_rootfs(packages: list[Package], out: BinaryIO, *, epoch: int) -> list[dict[str, str]]:
    """Write the layer tar of `packages` to `out`; returns their control fields, by name."""
    with tempfile.TemporaryDirectory(prefix="meshseed-rootfs-") as scratch:
        entries: dict[str, tuple[tarfile.TarFile, tarfile.TarInfo]] = {}
        archives: list[tarfile.TarFile] = []
        generated: dict[str, tuple[tarfile.TarInfo, bytes]] = dict(system_files(epoch))
        status = []
        try:
            ordered = sorted(packages, key=lambda p: p.name)
            plains = [Path(scratch) / f"{package.name}.tar" for package in ordered]
            # Decompressing data.tar (mostly xz) is most of the work, and lzma lets go of the GIL.
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                list(pool.map(unpack_data_tar, [p.deb for p in ordered], plains))
            for package, plain in zip(ordered, plains, strict=True):
                archive = tarfile.open(plain)  # noqa: SIM115 - closed in the finally below
                archives.append(archive)
                listing = []
                for member in archive.getmembers():
                    name = _normal(member.name)
                    if not name:
                        continue
                    listing.append("/" + name)
                    entries.setdefault(name, (archive, member))
                control = control_files(package.deb)
                fields = next(parse_deb822(control["control"].decode()))
                status.append(fields)
                info = f"var/lib/dpkg/info/{package.name}"
                generated[f"{info}.list"] = _generated_file(
                    f"{info}.list", "\n".join(["/.", *listing]) + "\n", epoch
                )
                if "md5sums" in control:
                    generated[f"{info}.md5sums"] = _generated_file(
                        f"{info}.md5sums", control["md5sums"], epoch
                    )
            text = "\n".join(_status_stanza(fields) for fields in status)
            generated["var/lib/dpkg/status"] = _generated_file("var/lib/dpkg/status", text, epoch)
            _write_layer(entries, generated, out, epoch)
        finally:
            for archive in archives:
                archive.close()
    return status


def _generated_file(name: str, content: str | bytes, epoch: int) -> tuple[tarfile.TarInfo, bytes]:
    data = content.encode() if isinstance(content, str) else content
    return tar_info(name, tarfile.REGTYPE, 0o644, epoch, size=len(data)), data


def _write_layer(
    entries: Mapping[str, tuple[tarfile.TarFile, tarfile.TarInfo]],
    generated: Mapping[str, tuple[tarfile.TarInfo, bytes]],
    out: BinaryIO,
    epoch: int,
) -> None:
    directories = {"var", "var/lib", "var/lib/dpkg", "var/lib/dpkg/info", "etc"}
    names = set(entries) | set(generated) | directories
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as layer:
        for name in sorted(names, key=str.encode):
            if name in generated:
                info, data = generated[name]
                layer.addfile(info, io.BytesIO(data))
            elif name in entries:
                _copy_member(layer, entries[name], name, entries, epoch)
            else:
                layer.addfile(tar_info(name, tarfile.DIRTYPE, 0o755, epoch))


def _copy_member(
    layer: tarfile.TarFile,
    entry: tuple[tarfile.TarFile, tarfile.TarInfo],
    name: str,
    entries: Mapping[str, tuple[tarfile.TarFile, tarfile.TarInfo]],
    epoch: int,
) -> None:
    member = entry[1]
    owner = (member.uid, member.gid)
    if member.issym():
        info = tar_info(name, tarfile.SYMTYPE, member.mode, epoch, owner=owner)
        info.linkname = member.linkname
        layer.addfile(info)
    elif member.islnk() or member.isreg():
        source_archive, source = entries[_normal(member.linkname)] if member.islnk() else entry
        info = tar_info(name, tarfile.REGTYPE, member.mode, epoch, size=source.size, owner=owner)
        layer.addfile(info, source_archive.extractfile(source))
    else:
        layer.addfile(tar_info(name, member.type, member.mode, epoch, owner=owner))
