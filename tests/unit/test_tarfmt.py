"""The tar writer of the air-gap bundles: the bytes it writes, header field by header field.

Comparing two runs with each other cannot catch a writer that is wrong the same way every
time, so these tests read every raw 512-byte header and check what it says.
"""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from builder.det.tarfmt import tar_info, write_members

EPOCH = 1700000000
BLOCK = 512


@dataclass(frozen=True)
class Header:
    """The ustar fields of one raw header block, undecoded except for NUL-trimming."""

    name: bytes
    mode: bytes
    uid: bytes
    gid: bytes
    size: int
    mtime: bytes
    typeflag: bytes
    magic_version: bytes
    uname: bytes
    gname: bytes
    prefix: bytes
    body: bytes


def field(block: bytes, start: int, end: int) -> bytes:
    return block[start:end].rstrip(b"\0")


def raw_headers(data: bytes) -> list[Header]:
    """Every header block of an archive in order, PAX extended headers ('x') included."""
    headers, offset = [], 0
    while data[offset : offset + BLOCK].strip(b"\0"):
        block = data[offset : offset + BLOCK]
        size = int(field(block, 124, 136) or b"0", 8)
        body = data[offset + BLOCK : offset + BLOCK + size]
        headers.append(
            Header(
                name=field(block, 0, 100),
                mode=block[100:108],
                uid=block[108:116],
                gid=block[116:124],
                size=size,
                mtime=block[136:148],
                typeflag=block[156:157],
                magic_version=block[257:265],
                uname=field(block, 265, 297),
                gname=field(block, 297, 329),
                prefix=field(block, 345, 500),
                body=body,
            )
        )
        offset += BLOCK + -(-size // BLOCK) * BLOCK
    return headers


def archive(members: dict[str, Path | bytes]) -> bytes:
    buffer = io.BytesIO()
    write_members(buffer, members, mtime=EPOCH)
    return buffer.getvalue()


def on_disk(path: Path, content: bytes, *, mode: int, mtime: int) -> Path:
    path.write_bytes(content)
    path.chmod(mode)
    os.utime(path, (mtime, mtime))
    return path


def test_members_are_sorted_0644_root_owned_regular_files_at_the_epoch(tmp_path: Path) -> None:
    # An executable, private file with its own mtime: none of that may reach the archive.
    tool = on_disk(tmp_path / "tool", b"#!/bin/sh\n", mode=0o700, mtime=12345)
    data = archive({"b": tool, "a/x": b"abc", "B": b"", "a": b"1"})
    headers = raw_headers(data)
    assert [h.name for h in headers] == [b"B", b"a", b"a/x", b"b"]
    for header in headers:
        assert header.typeflag == b"0"
        assert header.mode == b"0000644\0"
        assert (header.uid, header.gid) == (b"0000000\0", b"0000000\0")
        assert (header.uname, header.gname) == (b"", b"")
        assert header.mtime == b"%011o\0" % EPOCH
        # POSIX ustar magic and version; GNU tar's would be b"ustar  \0".
        assert header.magic_version == b"ustar\x0000"
        assert header.prefix == b""
    assert [h.size for h in headers] == [0, 1, 3, 10]
    with tarfile.open(fileobj=io.BytesIO(data)) as read:
        assert read.format == tarfile.PAX_FORMAT
        assert read.pax_headers == {}
        contents = {m.name: read.extractfile(m).read() for m in read.getmembers()}  # type: ignore[union-attr]
    assert contents == {"B": b"", "a": b"1", "a/x": b"abc", "b": b"#!/bin/sh\n"}


def test_names_sort_by_their_utf8_bytes() -> None:
    names = ["é", "z", "Z", "a-b", "a", "a/b", "0"]
    with tarfile.open(fileobj=io.BytesIO(archive(dict.fromkeys(names, b"")))) as read:
        assert read.getnames() == sorted(names, key=str.encode)
    assert sorted(names, key=str.encode) == ["0", "Z", "a", "a-b", "a/b", "z", "é"]


def test_a_name_ustar_cannot_hold_gets_a_pax_path_record_and_nothing_else() -> None:
    long_name = "blobs/sha256/" + "f" * 120
    headers = raw_headers(archive({long_name: b"x", "café": b"y"}))
    assert [h.typeflag for h in headers] == [b"x", b"0", b"x", b"0"]
    records = [h.body for h in headers if h.typeflag == b"x"]
    # A PAX record is "<length> <key>=<value>\n"; only the path, never times or owners.
    assert records[0] == b"%d path=%s\n" % (len(long_name) + 10, long_name.encode())
    assert records[1] == "14 path=café\n".encode()
    with tarfile.open(fileobj=io.BytesIO(archive({long_name: b"x", "café": b"y"}))) as read:
        assert read.getnames() == [long_name, "café"]
        assert all(m.pax_headers == {"path": m.name} for m in read.getmembers())


def test_the_same_members_give_the_same_bytes_whatever_the_files_say(tmp_path: Path) -> None:
    first = on_disk(tmp_path / "one", b"payload", mode=0o600, mtime=1)
    second = on_disk(tmp_path / "two", b"payload", mode=0o755, mtime=2_000_000_000)
    assert archive({"x": first, "y": b"1"}) == archive({"y": b"1", "x": second})
    assert archive({"x": first}) == archive({"x": b"payload"})


def test_the_archive_ends_with_two_zero_blocks_padded_to_a_record() -> None:
    data = archive({"a": b"1"})
    assert len(data) % tarfile.RECORDSIZE == 0
    assert data[2 * BLOCK :] == bytes(len(data) - 2 * BLOCK)


def test_tar_info_sets_exactly_the_given_fields() -> None:
    info = tar_info("home/nonroot", tarfile.DIRTYPE, 0o700, EPOCH, owner=(65532, 65533))
    assert (info.name, info.type, info.mode, info.mtime, info.size) == (
        "home/nonroot",
        tarfile.DIRTYPE,
        0o700,
        EPOCH,
        0,
    )
    assert (info.uid, info.gid, info.uname, info.gname) == (65532, 65533, "", "")
    plain = tar_info("f", tarfile.REGTYPE, 0o644, EPOCH, size=7)
    assert (plain.uid, plain.gid, plain.size) == (0, 0, 7)
