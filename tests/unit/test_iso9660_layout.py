"""The ISO 9660 writer, field by field: descriptors, path tables, directory records and
Rock Ridge entries at the offsets ECMA-119, Joliet and RRIP 1.09 give them.

Reading an image back with pycdlib only shows that it is readable; these tests pin what
each byte says, so a writer that is wrong the same way every time still fails.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.det.iso9660 import (
    SECTOR,
    IsoFile,
    _directory_record,
    _iso_names,
    _pack_records,
    write_iso,
    write_iso_to,
)
from builder.errors import MeshseedError

EPOCH = 1700000000  # 2023-11-14 22:13:20 UTC
RECORD_DATE = bytes([123, 11, 14, 22, 13, 20, 0])  # years since 1900, ..., GMT offset 0
VOLUME_DATE = b"2023111422132000\x00"
UNSET_DATE = b"0000000000000000\x00"
FILES = {
    "user-data": b"#cloud-config\nhostname: n1\n",
    "meta-data": b"instance-id: n1\n",
    "network-config": b"",
}
# Sorted by name: meta-data, network-config, user-data. Roots at 23 (primary) and 24
# (Joliet); data from 25; the empty file takes no sector.
EXTENTS = {"meta-data": 25, "network-config": 26, "user-data": 26}
TOTAL = 27


def sector(image: bytes, number: int) -> bytes:
    return image[number * SECTOR : (number + 1) * SECTOR]


def both16(value: int) -> bytes:
    return struct.pack("<H", value) + struct.pack(">H", value)


def both32(value: int) -> bytes:
    return struct.pack("<I", value) + struct.pack(">I", value)


def utf16(text: str) -> bytes:
    return text.encode("utf-16-be")


@dataclass(frozen=True)
class Record:
    """One directory record, its fields split out (ECMA-119 9.1)."""

    length: int
    extended: int
    extent: bytes
    size: bytes
    date: bytes
    flags: int
    unit: int
    gap: int
    sequence: bytes
    identifier: bytes
    padding: bytes
    system_use: bytes


def records(directory: bytes) -> list[Record]:
    """The records of a directory extent, skipping the zero fill at the end of each sector."""
    found, offset = [], 0
    while offset < len(directory):
        length = directory[offset]
        if length == 0:
            offset = (offset // SECTOR + 1) * SECTOR
            continue
        raw = directory[offset : offset + length]
        assert offset // SECTOR == (offset + length - 1) // SECTOR, "a record crosses a sector"
        name_length = raw[32]
        padding_length = 1 - name_length % 2
        found.append(
            Record(
                length=length,
                extended=raw[1],
                extent=raw[2:10],
                size=raw[10:18],
                date=raw[18:25],
                flags=raw[25],
                unit=raw[26],
                gap=raw[27],
                sequence=raw[28:32],
                identifier=raw[33 : 33 + name_length],
                padding=raw[33 + name_length : 33 + name_length + padding_length],
                system_use=raw[33 + name_length + padding_length :],
            )
        )
        offset += length
    return found


def susp(signature: bytes, body: bytes) -> bytes:
    """A SUSP entry: signature, length, version 1, body."""
    return signature + bytes([len(body) + 4, 1]) + body


def rock_ridge(mode: int, links: int, name: bytes | None) -> bytes:
    flags = 0x01 | 0x80 | (0x08 if name is not None else 0)  # PX, TF and NM announced
    entries = susp(b"RR", bytes([flags]))
    entries += susp(b"PX", both32(mode) + both32(links) + both32(0) + both32(0))
    entries += susp(b"TF", b"\x0e" + RECORD_DATE * 3)  # modify, access, attributes
    if name is not None:
        entries += susp(b"NM", b"\x00" + name)
    return entries


ER = susp(
    b"ER",
    bytes([10, 84, 14, 1])
    + b"RRIP_1991A"
    + b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS"
    + b"SEE IEEE P1282",
)


@pytest.fixture(scope="module")
def image() -> bytes:
    return write_iso(FILES, label="cidata", epoch=EPOCH)


def test_image_size_and_system_area(image: bytes) -> None:
    assert len(image) == TOTAL * SECTOR
    assert image[: 16 * SECTOR] == bytes(16 * SECTOR)


@pytest.mark.parametrize("joliet", [False, True], ids=["primary", "joliet"])
def test_volume_descriptors(image: bytes, joliet: bool) -> None:
    d = sector(image, 17 if joliet else 16)
    text = (
        (lambda s, n: utf16(s) + utf16(" ") * ((n - 2 * len(s)) // 2))
        if joliet
        else (lambda s, n: s.encode().ljust(n, b" "))
    )
    end = b"\x00" if joliet else b" "
    assert d[0:8] == bytes([2 if joliet else 1]) + b"CD001\x01\x00"
    assert d[8:40] == text("", 32)  # system identifier
    assert d[40:72] == text("cidata", 32)  # volume identifier
    assert d[72:80] == bytes(8)
    assert d[80:88] == both32(TOTAL)  # volume space size
    assert d[88:120] == (b"%/E" + bytes(29) if joliet else bytes(32))  # UCS-2 level 3 escape
    assert d[120:124] == both16(1)  # volume set size
    assert d[124:128] == both16(1)  # volume sequence number
    assert d[128:132] == both16(SECTOR)  # logical block size
    assert d[132:140] == both32(10)  # path table size
    tables = (21, 22) if joliet else (19, 20)
    assert d[140:148] == struct.pack("<I", tables[0]) + bytes(4)  # type L, optional L
    assert d[148:156] == struct.pack(">I", tables[1]) + bytes(4)  # type M, optional M
    root = 24 if joliet else 23
    assert d[156:190] == (
        bytes([34, 0])
        + both32(root)
        + both32(SECTOR)
        + RECORD_DATE
        + bytes([2, 0, 0])
        + both16(1)
        + b"\x01\x00"
    )
    for start in (190, 318, 446, 574):  # volume set, publisher, preparer, application
        assert d[start : start + 128] == text("", 128)
    for start in (702, 739, 776):  # copyright, abstract and bibliographic file identifiers
        assert d[start : start + 37] == text("", 36) + end
    assert d[813:830] == VOLUME_DATE  # creation
    assert d[830:847] == VOLUME_DATE  # modification
    assert d[847:864] == UNSET_DATE  # expiration
    assert d[864:881] == VOLUME_DATE  # effective
    assert d[881:883] == b"\x01\x00"  # file structure version
    assert d[883:] == bytes(SECTOR - 883)


def test_terminator_and_path_tables(image: bytes) -> None:
    assert sector(image, 18) == b"\xffCD001\x01" + bytes(SECTOR - 7)
    for number, root, big in ((19, 23, False), (20, 23, True), (21, 24, False), (22, 24, True)):
        location = struct.pack(">I" if big else "<I", root)
        parent = struct.pack(">H" if big else "<H", 1)
        assert sector(image, number) == bytes([1, 0]) + location + parent + b"\x00\x00" + bytes(SECTOR - 10)


def test_primary_directory_records(image: bytes) -> None:
    found = records(sector(image, 23))
    for record in found:
        assert (record.extended, record.unit, record.gap) == (0, 0, 0)
        assert record.sequence == both16(1)
        assert record.date == RECORD_DATE
        assert record.length == 33 + len(record.identifier) + len(record.padding) + len(record.system_use)
        assert record.padding == (b"\x00" if len(record.identifier) % 2 == 0 else b"")
    dot, dotdot, *files = found
    assert (dot.identifier, dot.extent, dot.size, dot.flags) == (b"\x00", both32(23), both32(SECTOR), 2)
    assert dot.system_use == susp(b"SP", b"\xbe\xef\x00") + rock_ridge(0o040555, 2, None) + ER
    assert (dotdot.identifier, dotdot.extent, dotdot.size, dotdot.flags) == (
        b"\x01",
        both32(23),
        both32(SECTOR),
        2,
    )
    assert dotdot.system_use == rock_ridge(0o040555, 2, None)
    expected = [
        (b"META_DAT.;1", "meta-data"),
        (b"NETWORK_.;1", "network-config"),
        (b"USER_DAT.;1", "user-data"),
    ]
    assert [r.identifier for r in files] == [name for name, _ in expected]
    for record, (_, name) in zip(files, expected, strict=True):
        assert record.flags == 0
        assert record.extent == both32(EXTENTS[name])
        assert record.size == both32(len(FILES[name]))
        assert record.system_use == rock_ridge(0o100644, 1, name.encode())


def test_joliet_directory_records(image: bytes) -> None:
    dot, dotdot, *files = records(sector(image, 24))
    assert (dot.identifier, dot.extent, dot.size, dot.flags, dot.system_use) == (
        b"\x00",
        both32(24),
        both32(SECTOR),
        2,
        b"",
    )
    assert (dotdot.identifier, dotdot.extent, dotdot.flags, dotdot.system_use) == (
        b"\x01",
        both32(24),
        2,
        b"",
    )
    assert [r.identifier for r in files] == [utf16(n) for n in ("meta-data", "network-config", "user-data")]
    for record in files:
        name = record.identifier.decode("utf-16-be")
        assert (record.extent, record.size, record.flags, record.system_use) == (
            both32(EXTENTS[name]),
            both32(len(FILES[name])),
            0,
            b"",
        )
        assert record.padding == b"\x00"  # UTF-16 names have even length


def test_file_data_is_padded_to_whole_sectors(image: bytes) -> None:
    meta, user = FILES["meta-data"], FILES["user-data"]
    assert sector(image, 25) == meta + bytes(SECTOR - len(meta))
    assert sector(image, 26) == user + bytes(SECTOR - len(user))


def test_modes_of_private_and_executable_files() -> None:
    files = {"key": IsoFile("key", b"k", 0o600), "run": IsoFile("run", b"r", 0o755)}
    _dot, _dotdot, *found = records(sector(write_iso(files, label="x", epoch=EPOCH), 23))
    assert [r.system_use for r in found] == [
        rock_ridge(0o100600, 1, b"key"),
        rock_ridge(0o100755, 1, b"run"),
    ]


def test_a_file_spanning_sectors_moves_the_next_extent(tmp_path: Path) -> None:
    big = bytes(range(256)) * 9  # 2304 bytes: two sectors
    source = tmp_path / "big"
    source.write_bytes(big)
    files = {"a": IsoFile("a", source), "b": b"after\n"}
    image = write_iso(files, label="x", epoch=EPOCH)
    _dot, _dotdot, a, b = records(sector(image, 24))  # Joliet names are in order
    assert (a.extent, a.size) == (both32(25), both32(len(big)))
    assert (b.extent, b.size) == (both32(27), both32(6))
    assert image[25 * SECTOR : 27 * SECTOR] == big + bytes(2 * SECTOR - len(big))
    assert sector(image, 27) == b"after\n" + bytes(SECTOR - 6)
    assert len(image) == 28 * SECTOR


def test_streamed_output_matches_the_bytes() -> None:
    class Sink:
        def __init__(self) -> None:
            self.data = bytearray()

        def write(self, data: bytes) -> int:
            self.data += data
            return len(data)

    sink = Sink()
    write_iso_to(sink, FILES, label="cidata", epoch=EPOCH)  # type: ignore[arg-type]
    assert bytes(sink.data) == write_iso(FILES, label="cidata", epoch=EPOCH)


def test_large_directories_spill_into_more_sectors() -> None:
    files = {f"file-number-{i:03d}": f"{i}\n".encode() for i in range(40)}
    image = write_iso(files, label="cidata", epoch=EPOCH)
    # 40 primary records of 131 bytes (with Rock Ridge) take three sectors, 40 Joliet
    # records of 64 bytes two; no record crosses a sector (`records` checks).
    primary = records(image[23 * SECTOR : 26 * SECTOR])
    joliet = records(image[26 * SECTOR : 28 * SECTOR])
    assert (len(primary), len(joliet)) == (42, 42)
    assert {r.length for r in primary[2:]} == {131}
    names = [r.identifier for r in primary[2:]]
    assert names == sorted(names)  # the primary directory is in order of its level-1 names
    assert (names[0], names[-2], names[-1]) == (b"FILE_N10.;1", b"FILE_NU9.;1", b"FILE_NUM.;1")
    assert (primary[0].extent, primary[0].size) == (both32(23), both32(3 * SECTOR))
    assert (joliet[0].extent, joliet[0].size) == (both32(26), both32(2 * SECTOR))
    assert sector(image, 16)[158:174] == both32(23) + both32(3 * SECTOR)
    assert sector(image, 17)[158:174] == both32(26) + both32(2 * SECTOR)
    assert sector(image, 16)[80:88] == both32(28 + 40)
    assert [r.extent for r in joliet[2:]] == [both32(28 + i) for i in range(40)]
    assert len(image) == (28 + 40) * SECTOR


def test_iso_level_one_names() -> None:
    assert _iso_names(["user-data", "user-data2", "user-datum", "a.b.c", "x.toolong", ".hidden", "é"]) == [
        b"USER_DAT.;1",
        b"USER_DA1.;1",
        b"USER_DA2.;1",
        b"A_B.C;1",
        b"X.TOO;1",
        b"_.HID;1",
        b"_.;1",
    ]
    many = _iso_names([f"collision{i}" for i in range(11)])
    assert many[0] == b"COLLISIO.;1"
    assert many[9] == b"COLLISI9.;1"
    assert many[10] == b"COLLIS10.;1"


@pytest.mark.parametrize("name", ["", "a/b", "x" * 65])
def test_names_that_are_not_flat_or_too_long(name: str) -> None:
    with pytest.raises(ValueError, match="flat names of 1-64 characters"):
        write_iso({name: b""}, label="x", epoch=EPOCH)


def test_a_name_of_64_characters_is_kept_whole() -> None:
    name = "n" * 64
    _dot, _dotdot, record = records(sector(write_iso({name: b"1"}, label="x", epoch=EPOCH), 24))
    assert record.identifier == utf16(name)


class Refuse:
    """An output that fails at once: a writer that accepted a 4 GiB file must not get to
    copy it (into memory) before the test fails."""

    def write(self, data: bytes) -> int:
        raise AssertionError("the writer went on to write")


def test_files_of_4_gib_are_refused(tmp_path: Path) -> None:
    huge, largest = tmp_path / "huge", tmp_path / "largest"
    for path, size in ((huge, 1 << 32), (largest, (1 << 32) - 1)):
        with path.open("wb") as stream:
            stream.truncate(size)  # sparse: no disk space used
    with pytest.raises(MeshseedError, match="huge: 4294967296 bytes is too large for one ISO 9660 file"):
        write_iso_to(Refuse(), {"huge": IsoFile("huge", huge)}, label="x", epoch=EPOCH)  # type: ignore[arg-type]
    # One byte less fits: the writer gets as far as writing the head.
    with pytest.raises(AssertionError, match="the writer went on to write"):
        write_iso_to(Refuse(), {"largest": IsoFile("largest", largest)}, label="x", epoch=EPOCH)  # type: ignore[arg-type]


def test_directory_records_are_at_most_255_bytes() -> None:
    assert len(_directory_record(b"a" * 221, 0, 0, 0, epoch=EPOCH, system_use=b"x")) == 255
    with pytest.raises(ValueError, match="directory record too long"):
        _directory_record(b"a" * 221, 0, 0, 0, epoch=EPOCH, system_use=b"xy")


def test_records_are_packed_up_to_a_sector_end_and_never_across_it() -> None:
    exactly = _pack_records([b"a" * 2000, b"b" * 48])  # ends on the sector's last byte
    assert exactly == b"a" * 2000 + b"b" * 48
    over = _pack_records([b"a" * 2000, b"b" * 49])  # would take the next sector's first byte
    assert over == b"a" * 2000 + bytes(48) + b"b" * 49


def test_iso_files_are_frozen_values() -> None:
    entry = IsoFile("a", b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.mode = 0o600  # type: ignore[misc]
    assert hash(entry) == hash(IsoFile("a", b"x"))
