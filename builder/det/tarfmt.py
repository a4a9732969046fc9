"""Deterministic tar archives: the same tree always gives the same bytes.

Entries are sorted by path, owned by 0:0 with empty owner names, stamped with one
mtime, and regular files have mode 0644. Archives are POSIX (PAX) tars; a PAX record is
written only where a name does not fit ustar (too long, or not ASCII), and never carries
fractional times, atime or ctime.
"""

from __future__ import annotations

import io
import os
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
