"""Reading .deb files in pure Python: the ar container, control fields and data.tar."""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import zstandard

from builder.debian.index import parse_deb822
from builder.errors import MeshseedError

_AR_MAGIC = b"!<arch>\n"
_HEADER = 60


def ar_members(path: Path) -> dict[str, tuple[int, int]]:
    """Member name -> (offset, size) of a .deb's ar archive."""
    members = {}
    with path.open("rb") as stream:
        if stream.read(8) != _AR_MAGIC:
            raise MeshseedError(f"{path}: not a .deb (no ar header)")
        offset = 8
        while header := stream.read(_HEADER):
            if len(header) < _HEADER or header[58:60] != b"`\n":
                raise MeshseedError(f"{path}: damaged ar header at byte {offset}")
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            members[name] = (offset + _HEADER, size)
            offset += _HEADER + size + (size % 2)
            stream.seek(offset)
    return members


def _open_member(path: Path, prefix: str) -> tuple[str, int, int]:
    for name, (offset, size) in ar_members(path).items():
        if name.startswith(prefix):
            return name, offset, size
    raise MeshseedError(f"{path}: has no {prefix}* member")


@contextmanager
def _decompressed(path: Path, prefix: str) -> Iterator[BinaryIO]:
    name, offset, size = _open_member(path, prefix)
    with path.open("rb") as raw:
        source: Any = io.BufferedReader(_Window(raw, offset, size), 1 << 20)
        if name.endswith(".gz"):
            with gzip.GzipFile(fileobj=source) as stream:
                yield stream  # type: ignore[misc]
        elif name.endswith(".xz"):
            with lzma.LZMAFile(source) as stream:
                yield stream  # type: ignore[misc]
        elif name.endswith(".zst"):
            with zstandard.ZstdDecompressor().stream_reader(source) as stream:
                yield stream
        elif name.endswith(".tar"):
            yield source
        else:
            raise MeshseedError(f"{path}: {name} uses a compression meshseed does not read")


class _Window(io.RawIOBase):
    """A read-only view of `size` bytes of a file from `offset`, for large data members."""

    def __init__(self, raw: BinaryIO, offset: int, size: int) -> None:
        self.raw, self.left = raw, size
        raw.seek(offset)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            return 0
        data = self.raw.read(min(len(buffer), self.left))
        buffer[: len(data)] = data
        self.left -= len(data)
        return len(data)


def control_files(path: Path) -> dict[str, bytes]:
    """The files of control.tar (control, md5sums, ...), by name."""
    files = {}
    with _decompressed(path, "control.tar") as stream, tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            if member.isfile():
                extracted = archive.extractfile(member)
                if extracted is not None:
                    files[member.name.removeprefix("./")] = extracted.read()
    return files


def control_fields(path: Path) -> dict[str, str]:
    return next(parse_deb822(control_files(path)["control"].decode()))


def unpack_data_tar(path: Path, target: Path) -> None:
    """Write the .deb's data.tar, decompressed, to `target` (a plain, seekable tar)."""
    with _decompressed(path, "data.tar") as stream, target.open("wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)
