"""A deterministic ISO 9660 writer for flat volumes such as cloud-init NoCloud seeds.

pycdlib stamps the wall clock (in local time) into every record, so its images change
with each build. This writer lays out the few files of a seed itself: a primary volume
with Rock Ridge (RRIP 1.09) names, modes and times, and a Joliet supplementary volume,
both pointing at the same file data. Every date is the given epoch in UTC; nothing is
random. Layout, in 2048-byte sectors:

    0-15  system area (zeros)       16  primary volume descriptor
    17    Joliet descriptor         18  descriptor set terminator
    19-22 path tables (L, M for each volume)
    then  primary root directory, Joliet root directory, file data
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from builder.errors import MeshseedError

SECTOR = 2048
_FIRST_FREE = 23
_DIRECTORY_FLAG = 0x02
_ER_ID = b"RRIP_1991A"
_ER_DESCRIPTION = b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
_ER_SOURCE = b"SEE IEEE P1282"
# Which Rock Ridge entries follow, as the RRIP 1.09 "RR" entry announces them.
_RR_PX, _RR_NM, _RR_TF = 0x01, 0x08, 0x80


def _both16(value: int) -> bytes:
    return struct.pack("<H", value) + struct.pack(">H", value)


def _both32(value: int) -> bytes:
    return struct.pack("<I", value) + struct.pack(">I", value)


def _sectors(size: int) -> int:
    return max(1, -(-size // SECTOR))


@dataclass(frozen=True)
class IsoFile:
    """A file of the image: its bytes, or a path to stream them from (for large files)."""

    name: str
    data: bytes | Path
    mode: int = 0o644

    @property
    def size(self) -> int:
        return self.data.stat().st_size if isinstance(self.data, Path) else len(self.data)


def _record_date(epoch: int) -> bytes:
    t = time.gmtime(epoch)
    return bytes([t.tm_year - 1900, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, 0])


def _volume_date(epoch: int) -> bytes:
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(epoch)).encode() + b"00" + b"\x00"


_UNSET_DATE = b"0" * 16 + b"\x00"


def _susp(signature: bytes, body: bytes) -> bytes:
    return signature + bytes([len(body) + 4, 1]) + body


def _rock_ridge(mode: int, links: int, epoch: int, name: str | None) -> bytes:
    flags = _RR_PX | _RR_TF | (_RR_NM if name is not None else 0)
    entries = _susp(b"RR", bytes([flags]))
    entries += _susp(b"PX", _both32(mode) + _both32(links) + _both32(0) + _both32(0))
    # TF with modify, access and attribute-change times, all the epoch.
    entries += _susp(b"TF", bytes([0x0E]) + _record_date(epoch) * 3)
    if name is not None:
        entries += _susp(b"NM", b"\x00" + name.encode())
    return entries


def _directory_record(
    identifier: bytes, extent: int, size: int, flags: int, *, epoch: int, system_use: bytes = b""
) -> bytes:
    padding = b"\x00" if len(identifier) % 2 == 0 else b""
    length = 33 + len(identifier) + len(padding) + len(system_use)
    if length > 255:
        raise ValueError("directory record too long")
    return (
        bytes([length, 0])
        + _both32(extent)
        + _both32(size)
        + _record_date(epoch)
        + bytes([flags, 0, 0])
        + _both16(1)
        + bytes([len(identifier)])
        + identifier
        + padding
        + system_use
    )


def _pack_records(records: list[bytes]) -> bytes:
    """Records may not cross a sector boundary; pad to the next sector where one would."""
    out = bytearray()
    for record in records:
        if len(out) // SECTOR != (len(out) + len(record) - 1) // SECTOR:
            out += bytes(SECTOR - len(out) % SECTOR)
        out += record
    return bytes(out)


def _iso_names(names: list[str]) -> list[bytes]:
    """Unique level-1 (8.3, upper case) names; readers show the Rock Ridge or Joliet name."""
    result, used = [], set()
    for name in names:
        stem, _, extension = name.upper().rpartition(".") if "." in name else (name.upper(), "", "")
        stem = re.sub(r"[^A-Z0-9_]", "_", stem)[:8] or "_"
        extension = re.sub(r"[^A-Z0-9_]", "_", extension)[:3]
        candidate, counter = stem, 0
        while f"{candidate}.{extension}" in used:
            counter += 1
            candidate = stem[: 8 - len(str(counter))] + str(counter)
        used.add(f"{candidate}.{extension}")
        result.append(f"{candidate}.{extension};1".encode())
    return result


def _joliet_text(text: str, length: int) -> bytes:
    encoded = text.encode("utf-16-be")
    return encoded + " ".encode("utf-16-be") * ((length - len(encoded)) // 2)


def _a_text(text: str, length: int) -> bytes:
    return text.encode("ascii").ljust(length, b" ")


class _Volume:
    """One directory hierarchy (primary or Joliet) over shared file extents."""

    def __init__(self, joliet: bool, label: str, files: list[IsoFile], extents: list[int], epoch: int):
        self.joliet = joliet
        self.label = label
        self.files = files
        self.extents = extents
        self.epoch = epoch
        self.names = (
            [f.name.encode("utf-16-be") for f in files] if joliet else _iso_names([f.name for f in files])
        )

    def _system_use(self, kind: str, mode: int = 0o555, name: str | None = None) -> bytes:
        if self.joliet:
            return b""
        entries = _rock_ridge(
            0o040000 | mode if kind != "file" else 0o100000 | mode,
            2 if kind != "file" else 1,
            self.epoch,
            name,
        )
        if kind == "root":
            entries = (
                _susp(b"SP", b"\xbe\xef\x00")
                + entries
                + _susp(
                    b"ER",
                    bytes([len(_ER_ID), len(_ER_DESCRIPTION), len(_ER_SOURCE), 1])
                    + _ER_ID
                    + _ER_DESCRIPTION
                    + _ER_SOURCE,
                )
            )
        return entries

    def directory(self, location: int, size: int) -> bytes:
        def record(identifier: bytes, extent: int, length: int, flags: int, system_use: bytes) -> bytes:
            return _directory_record(
                identifier, extent, length, flags, epoch=self.epoch, system_use=system_use
            )

        records = [
            record(b"\x00", location, size, _DIRECTORY_FLAG, self._system_use("root")),
            record(b"\x01", location, size, _DIRECTORY_FLAG, self._system_use("parent")),
        ]
        for file, name, extent in sorted(
            zip(self.files, self.names, self.extents, strict=True), key=lambda item: item[1]
        ):
            system_use = self._system_use("file", file.mode, file.name)
            records.append(record(name, extent, file.size, 0, system_use))
        return _pack_records(records)

    def directory_size(self) -> int:
        return _sectors(len(self.directory(0, 0))) * SECTOR

    def descriptor(self, total: int, path_tables: tuple[int, int], root: int, root_size: int) -> bytes:
        text = _joliet_text if self.joliet else _a_text
        date = _volume_date(self.epoch)
        descriptor = (
            bytes([2 if self.joliet else 1])
            + b"CD001\x01\x00"
            + text("", 32)
            + text(self.label, 32)
            + bytes(8)
            + _both32(total)
            + (b"%/E".ljust(32, b"\x00") if self.joliet else bytes(32))
            + _both16(1)
            + _both16(1)
            + _both16(SECTOR)
            + _both32(10)
            + struct.pack("<I", path_tables[0])
            + bytes(4)
            + struct.pack(">I", path_tables[1])
            + bytes(4)
            + _directory_record(b"\x00", root, root_size, _DIRECTORY_FLAG, epoch=self.epoch)
            + text("", 128) * 4
            + text("", 36)
            + (b"\x00" if self.joliet else b" ")
            + (text("", 36) + (b"\x00" if self.joliet else b" ")) * 2
            + date
            + date
            + _UNSET_DATE
            + date
            + b"\x01\x00"
        )
        return descriptor.ljust(SECTOR, b"\x00")

    @staticmethod
    def path_table(root: int, big_endian: bool) -> bytes:
        return (
            bytes([1, 0])
            + struct.pack(">I" if big_endian else "<I", root)
            + struct.pack(">H" if big_endian else "<H", 1)
            + b"\x00\x00"
        )


def write_iso(files: Mapping[str, bytes | IsoFile], *, label: str, epoch: int) -> bytes:
    """An ISO image holding `files` (name -> content) in its root directory."""
    out = io.BytesIO()
    write_iso_to(out, files, label=label, epoch=epoch)
    return out.getvalue()


def write_iso_to(out: BinaryIO, files: Mapping[str, bytes | IsoFile], *, label: str, epoch: int) -> None:
    """Stream the ISO image of `files` to `out`; file data is copied, never held whole."""
    entries = [
        value if isinstance(value, IsoFile) else IsoFile(name, value) for name, value in sorted(files.items())
    ]
    for entry in entries:
        if "/" in entry.name or not entry.name or len(entry.name) > 64:
            raise ValueError(f"{entry.name!r}: this writer holds only flat names of 1-64 characters")
        if entry.size >= 1 << 32:
            # One ISO 9660 extent holds under 4 GiB; files that large would need several.
            raise MeshseedError(
                f"{entry.name}: {entry.size} bytes is too large for one ISO 9660 file (4 GiB)"
            )
    probe = [_Volume(j, label, entries, [0] * len(entries), epoch) for j in (False, True)]
    primary_root = _FIRST_FREE
    joliet_root = primary_root + probe[0].directory_size() // SECTOR
    extent = joliet_root + probe[1].directory_size() // SECTOR
    extents = []
    for entry in entries:
        extents.append(extent)
        extent += _sectors(entry.size) if entry.size else 0
    total = extent
    primary, joliet = (_Volume(j, label, entries, extents, epoch) for j in (False, True))
    head = bytearray(16 * SECTOR)
    head += primary.descriptor(total, (19, 20), primary_root, primary.directory_size())
    head += joliet.descriptor(total, (21, 22), joliet_root, joliet.directory_size())
    head += (b"\xffCD001\x01").ljust(SECTOR, b"\x00")
    for volume, root in ((primary, primary_root), (joliet, joliet_root)):
        for big_endian in (False, True):
            head += volume.path_table(root, big_endian).ljust(SECTOR, b"\x00")
    head += primary.directory(primary_root, primary.directory_size()).ljust(primary.directory_size(), b"\x00")
    head += joliet.directory(joliet_root, joliet.directory_size()).ljust(joliet.directory_size(), b"\x00")
    out.write(head)
    written = len(head)
    for entry in entries:
        if not entry.size:
            continue
        if isinstance(entry.data, Path):
            with entry.data.open("rb") as source:
                shutil.copyfileobj(source, out, 1 << 20)
        else:
            out.write(entry.data)
        padding = _sectors(entry.size) * SECTOR - entry.size
        out.write(bytes(padding))
        written += entry.size + padding
    assert written == total * SECTOR
