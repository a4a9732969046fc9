"""The small deterministic writers, pinned to the exact bytes and settings they promise:
gzip and zstd parameters, canonical and compact JSON, block YAML, SOURCE_DATE_EPOCH's
range and the atomic file writer."""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import zlib
from pathlib import Path

import pytest
import yaml
import zstandard

from builder.det import files
from builder.det.compress import compressor_versions, gzip_bytes, zstd_bytes, zstd_writer
from builder.det.epoch import DEFAULT_EPOCH, LATEST_EPOCH, source_date_epoch
from builder.det.files import write_atomically
from builder.det.jsonfmt import canonical_json, compact_json
from builder.det.yamlfmt import dump_documents, dump_yaml, load_yaml
from builder.errors import ExitStatus, MeshseedError

# 13 MiB with a 64 KiB period: larger than the 8 MiB window, and enough for a
# multi-threaded compressor to split into jobs (which changes the frame).
PAYLOAD = os.urandom(1 << 16) * 200


def reference_zstd() -> zstandard.ZstdCompressor:
    """What the module documents: level 3, window 2^23, single-threaded, with a checksum."""
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=23, threads=0, write_checksum=1)
    return zstandard.ZstdCompressor(compression_params=params)


def test_gzip_is_zlib_level_1_without_name_or_time() -> None:
    data = gzip_bytes(PAYLOAD[:100_000])
    # magic, deflate, no flags (so no FNAME), mtime 0, XFL 4 ("fastest"), OS 255 (unknown)
    assert data[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
    deflate = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = deflate.compress(PAYLOAD[:100_000]) + deflate.flush()
    assert data[10:-8] == body
    assert gzip.decompress(data) == PAYLOAD[:100_000]


def test_zstd_uses_the_documented_parameters() -> None:
    data = zstd_bytes(PAYLOAD)
    assert data == reference_zstd().compress(PAYLOAD)
    frame = zstandard.get_frame_parameters(data)
    assert (frame.window_size, frame.has_checksum, frame.content_size) == (1 << 23, True, len(PAYLOAD))


def test_zstd_writer_streams_one_frame_and_leaves_the_target_open() -> None:
    target = io.BytesIO()
    with zstd_writer(target) as writer:
        writer.write(PAYLOAD)
    assert not target.closed
    data = target.getvalue()
    expected = io.BytesIO()
    with reference_zstd().stream_writer(expected, closefd=False) as reference:
        reference.write(PAYLOAD)
    assert data == expected.getvalue()
    frame = zstandard.get_frame_parameters(data)
    assert (frame.window_size, frame.has_checksum) == (1 << 23, True)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(data) == PAYLOAD


def test_compressor_versions_name_the_levels_and_window() -> None:
    zstd_version = ".".join(map(str, zstandard.ZSTD_VERSION))
    assert compressor_versions() == {
        "gzip": f"zlib {zlib.ZLIB_RUNTIME_VERSION} level 1",
        "zstd": f"zstd {zstd_version} level 3 window 2^23",
    }


def test_canonical_json_pretty_and_compact() -> None:
    value = {"b": [1, {"d": None, "c": True}], "a": "é"}
    assert canonical_json(value) == (
        '{\n  "a": "é",\n  "b": [\n    1,\n    {\n      "c": true,\n      "d": null\n    }\n  ]\n}\n'
    )
    assert canonical_json(value, pretty=False) == '{"a":"é","b":[1,{"c":true,"d":null}]}\n'
    assert canonical_json(value).encode() == canonical_json(value).encode("utf-8")


def test_compact_json_is_ascii_sorted_and_has_no_newline() -> None:
    assert compact_json({"b": 1, "a": ["é", {"z": 0, "y": 1}]}) == '{"a":["\\u00e9",{"y":1,"z":0}],"b":1}'


def test_yaml_indents_nested_blocks_and_keeps_unicode() -> None:
    value = {"b": {"c": {"d": 1}}, "a": [[1, 2], {"x": [3]}], "u": "é"}
    assert dump_yaml(value) == "a:\n  - - 1\n    - 2\n  - x:\n      - 3\nb:\n  c:\n    d: 1\nu: é\n"
    assert dump_yaml({"z": 1, "a": 2}, sort_keys=False) == "z: 1\na: 2\n"


def test_yaml_lines_are_not_wrapped_below_64_kib() -> None:
    words = " ".join(["w" * 9] * 6500)  # 64 999 characters
    assert dump_yaml({"a": words}) == f"a: {words}\n"
    longer = " ".join(["w" * 9] * 7000)
    assert [len(line) for line in dump_yaml({"a": longer}).splitlines()] == [65542, 4461]


def test_load_yaml_is_safe_and_reads_plain_values() -> None:
    assert load_yaml("a: [1, x]\nb: {c: null}\n") == {"a": [1, "x"], "b": {"c": None}}
    with pytest.raises(yaml.YAMLError):
        load_yaml("a: !!python/object/apply:os.getcwd []\n")


def test_dump_documents_writes_literal_blocks_in_the_given_order() -> None:
    documents = [{"kind": "A", "data": "line 1\nline 2\n", "one": "single line"}, {"b": [1]}]
    assert dump_documents(documents) == (
        "---\nkind: A\ndata: |\n  line 1\n  line 2\none: single line\n---\nb:\n  - 1\n"
    )
    assert yaml.safe_load_all(dump_documents(documents)).__next__() == documents[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", DEFAULT_EPOCH),
        ("  ", DEFAULT_EPOCH),
        ("315532800", DEFAULT_EPOCH),
        (" 1700000000\n", 1700000000),
        ("7983878399", LATEST_EPOCH),
    ],
)
def test_source_date_epoch_range(text: str, expected: int) -> None:
    assert (DEFAULT_EPOCH, LATEST_EPOCH) == (315532800, 7983878399)
    assert source_date_epoch({"SOURCE_DATE_EPOCH": text}) == expected


@pytest.mark.parametrize("text", ["315532799", "7983878400", "0", "+1700000000"])
def test_source_date_epoch_outside_the_range(text: str) -> None:
    with pytest.raises(MeshseedError) as caught:
        source_date_epoch({"SOURCE_DATE_EPOCH": text})
    assert caught.value.status is ExitStatus.BAD_INPUT
    assert str(caught.value) == (
        f"SOURCE_DATE_EPOCH={text!r} is not a time meshseed can use "
        "(whole seconds since 1970, from 315532800 (1980-01-01) to 7983878399)"
    )


def test_write_atomically_creates_parents_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.json"
    write_atomically(target, b"one")
    assert target.read_bytes() == b"one"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    write_atomically(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]


def test_write_atomically_writes_a_synced_temporary_beside_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.txt"
    target.write_bytes(b"old")
    seen: list[tuple[list[str], bytes, int]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        (temporary,) = (p for p in tmp_path.iterdir() if p.name != "out.txt")
        seen.append(([p.name for p in tmp_path.iterdir()], temporary.read_bytes(), temporary.stat().st_mode))
        assert target.read_bytes() == b"old"  # readers still see the old content
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync)
    write_atomically(target, b"new", mode=0o640)
    ((names, written, mode),) = seen
    (temporary,) = (n for n in names if n != "out.txt")
    assert temporary.startswith(".out.txt.") and temporary.endswith(".tmp")
    assert (written, stat.S_IMODE(mode)) == (b"new", 0o640)
    assert target.read_bytes() == b"new"


def test_write_atomically_removes_the_temporary_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out.txt"

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output error"):
        write_atomically(target, b"new")
    assert list(tmp_path.iterdir()) == []


def test_write_atomically_tolerates_a_temporary_already_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def vanish(fd: int) -> None:
        for path in tmp_path.iterdir():
            path.unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", vanish)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "out.txt", b"new")
    assert list(tmp_path.iterdir()) == []


def test_json_used_for_hashing_round_trips() -> None:
    value = {"k": [1, 2.5, "x", None]}
    assert json.loads(canonical_json(value, pretty=False)) == value
