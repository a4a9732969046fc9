"""What an image holds, read from its layers: the Debian packages dpkg recorded, and the
files no package owns (the project's own)."""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import zstandard

from builder.debian.package import DebianPackage

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_LISTS = "var/lib/dpkg/info/"


@dataclass(frozen=True)
class ImageFile:
    path: str
    sha256: str
    sha1: str


@dataclass(frozen=True)
class ImageContents:
    packages: tuple[DebianPackage, ...]
    files: tuple[ImageFile, ...]


def read_contents(layers: list[Path]) -> ImageContents:
    """Packages and unowned files of the image whose layers (in order) are `layers`."""
    status = b""
    owned: set[str] = set()
    files: dict[str, ImageFile] = {}
    for layer in layers:
        for member, stream in _members(layer):
            name = member.name.lstrip("./")
            if name == DPKG_STATUS:
                status = stream.read()
            elif name.startswith(DPKG_LISTS) and name.endswith(".list"):
                owned.update(line.lstrip("/") for line in stream.read().decode().splitlines())
            elif member.isreg() and not name.startswith("var/lib/dpkg/"):
                data = stream.read()
                files[name] = ImageFile(
                    name, hashlib.sha256(data).hexdigest(), hashlib.sha1(data).hexdigest()
                )
    packages = tuple(sorted(_installed(status), key=lambda p: (p.name, p.architecture)))
    unowned = tuple(files[name] for name in sorted(files) if name not in owned)
    return ImageContents(packages, unowned)


def _members(layer: Path) -> Iterator[tuple[tarfile.TarInfo, IO[bytes]]]:
    with layer.open("rb") as raw:
        magic = raw.read(4)
        raw.seek(0)
        stream: Any
        if magic[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=raw)
        elif magic == b"\x28\xb5\x2f\xfd":
            stream = zstandard.ZstdDecompressor().stream_reader(raw)
        else:
            stream = raw
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                extracted = archive.extractfile(member) if member.isreg() else None
                yield member, extracted if extracted is not None else _EMPTY


class _Empty:
    def read(self, _size: int = -1) -> bytes:
        return b""


_EMPTY: IO[bytes] = _Empty()  # type: ignore[assignment]  # only .read() is ever called


def _installed(status: bytes) -> Iterator[DebianPackage]:
    for stanza in status.decode("utf-8", errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package") and "installed" in fields.get("Status", "installed").split():
            yield DebianPackage(fields["Package"], fields.get("Version", ""), fields.get("Architecture", ""))
