"""Deterministic tar archives: the same tree always gives the same bytes.

Entries are sorted by path, owned by 0:0 with empty owner names, stamped with one
mtime, and their modes reduced to 0755 (directories, executables) or 0644. No PAX
records are written except where a path is too long for ustar, and those never carry
fractional times, atime or ctime.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path
from typing import BinaryIO


def tar_info(
    name: str, kind: bytes, mode: int, mtime: int, *, size: int = 0, owner: tuple[int, int] = (0, 0)
) -> tarfile.TarInfo:
    """A member header with one mtime and numeric owners only (no user or group names)."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, mtime, size
    (info.uid, info.gid), info.uname, info.gname = owner, "", ""
    return info


def normal_mode(mode: int) -> int:
    """0755 for directories and anything the owner may execute, else 0644."""
    return 0o755 if stat.S_ISDIR(mode) or mode & stat.S_IXUSR else 0o644


def write_tar(root: Path, stream: BinaryIO, *, mtime: int, prefix: str = "") -> None:
    """Archive everything under `root` (not `root` itself) into `stream`.

    `prefix` is put in front of every member name, e.g. "rootfs/". Symbolic links are
    kept as links; other special files are refused.
    """
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as archive:
        for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix().encode()):
            name = prefix + path.relative_to(root).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                entry = tar_info(name, tarfile.SYMTYPE, 0o777, mtime)
                entry.linkname = str(path.readlink())
                archive.addfile(entry)
            elif stat.S_ISDIR(info.st_mode):
                archive.addfile(tar_info(name, tarfile.DIRTYPE, 0o755, mtime))
            elif stat.S_ISREG(info.st_mode):
                entry = tar_info(name, tarfile.REGTYPE, normal_mode(info.st_mode), mtime, size=info.st_size)
                with path.open("rb") as content:
                    archive.addfile(entry, content)
            else:
                raise ValueError(f"{path}: only files, directories and symlinks can be archived")


def tar_bytes(members: dict[str, bytes], *, mtime: int) -> bytes:
    """Archive in-memory files (name -> content), sorted, as regular 0644 files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as archive:
        for name in sorted(members, key=str.encode):
            data = members[name]
            archive.addfile(tar_info(name, tarfile.REGTYPE, 0o644, mtime, size=len(data)), io.BytesIO(data))
    return buffer.getvalue()


def write_members(stream: BinaryIO, members: dict[str, Path | bytes], *, mtime: int) -> None:
    """Archive named files (read from disk) or bytes as 0644 regular files, sorted by name.

    Files stream from disk, so a member of any size costs no memory.
    """
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as archive:
        for name in sorted(members, key=str.encode):
            member = members[name]
            if isinstance(member, bytes):
                archive.addfile(
                    tar_info(name, tarfile.REGTYPE, 0o644, mtime, size=len(member)), io.BytesIO(member)
                )
            else:
                with member.open("rb") as content:
                    size = os.fstat(content.fileno()).st_size
                    archive.addfile(tar_info(name, tarfile.REGTYPE, 0o644, mtime, size=size), content)
