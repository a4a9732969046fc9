"""Each deterministic writer gives the same bytes for the same content, whatever else differs."""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pycdlib
import pytest
import yaml
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from builder.det.compress import compressor_versions, gzip_bytes, zstd_bytes
from builder.det.epoch import DEFAULT_EPOCH, source_date_epoch
from builder.det.iso9660 import IsoFile, write_iso
from builder.det.jsonfmt import canonical_json
from builder.det.yamlfmt import dump_yaml
from builder.errors import MeshseedError

EPOCH = 1700000000


@pytest.fixture
def timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run under a time zone 12:45 from UTC, so any local-time leak shows."""
    monkeypatch.setenv("TZ", "Pacific/Chatham")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_gzip_header_has_no_time_or_name() -> None:
    data = gzip_bytes(b"hello" * 1000)
    flags, mtime = data[3], struct.unpack("<I", data[4:8])[0]
    assert (flags & 0x08, mtime) == (0, 0)  # no FNAME, mtime 0
    assert gzip.decompress(data) == b"hello" * 1000
    assert gzip_bytes(b"hello" * 1000) == data


def test_zstd_is_stable_and_round_trips() -> None:
    payload = os.urandom(1 << 16) * 4
    assert zstd_bytes(payload) == zstd_bytes(payload)
    assert zstandard.ZstdDecompressor().decompress(zstd_bytes(payload)) == payload
    assert set(compressor_versions()) == {"gzip", "zstd"}


@given(st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6))
def test_canonical_json_is_independent_of_insertion_order(value: dict[str, object]) -> None:
    reordered = dict(reversed(list(value.items())))
    assert canonical_json(value) == canonical_json(reordered)
    assert canonical_json(value, pretty=False) == canonical_json(reordered, pretty=False)
    assert canonical_json(value).endswith("}\n")
    assert json.loads(canonical_json(value)) == value


def test_canonical_json_format() -> None:
    assert canonical_json({"b": 1, "a": ["é"]}, pretty=False) == '{"a":["é"],"b":1}\n'


def test_yaml_is_stable_and_block_style() -> None:
    value = {"b": [1, {"y": 2, "x": 1}], "a": "text: with colon"}
    assert dump_yaml(value) == "a: 'text: with colon'\nb:\n  - 1\n  - x: 1\n    y: 2\n"
    assert dump_yaml(value, sort_keys=False).startswith("b:")
    assert yaml.safe_load(dump_yaml(value)) == value


SEED = {
    "user-data": b"#cloud-config\nhostname: n1\n",
    "meta-data": b"instance-id: n1\n",
    "network-config": b"",
}


def read_iso(data: bytes, tmp_path: Path) -> pycdlib.PyCdlib:
    path = tmp_path / "seed.iso"
    path.write_bytes(data)
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    return iso


def iso_file(iso: pycdlib.PyCdlib, **where: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **where)
    return out.getvalue()


def test_iso_is_identical_in_any_time_zone(timezone: None) -> None:
    in_chatham = write_iso(SEED, label="cidata", epoch=EPOCH)
    os.environ["TZ"] = "UTC"
    time.tzset()
    assert write_iso(dict(reversed(SEED.items())), label="cidata", epoch=EPOCH) == in_chatham
    assert write_iso(SEED, label="cidata", epoch=EPOCH + 1) != in_chatham


def test_iso_is_read_back_by_pycdlib(tmp_path: Path) -> None:
    files = {**SEED, "private": IsoFile("private", b"secret\n", 0o600)}
    iso = read_iso(write_iso(files, label="cidata", epoch=EPOCH), tmp_path)
    try:
        assert iso.pvd.volume_identifier.rstrip() == b"cidata"
        names = {
            c.rock_ridge.name().decode(): c
            for c in iso.list_children(rr_path="/")
            if not c.is_dot() and not c.is_dotdot()
        }
        assert sorted(names) == ["meta-data", "network-config", "private", "user-data"]
        assert names["private"].rock_ridge.get_file_mode() == 0o100600
        assert names["user-data"].rock_ridge.get_file_mode() == 0o100644
        joliet = sorted(
            c.file_identifier().decode("utf-16-be")
            for c in iso.list_children(joliet_path="/")
            if not c.is_dot() and not c.is_dotdot()
        )
        assert joliet == ["meta-data", "network-config", "private", "user-data"]
        for name, data in SEED.items():
            assert iso_file(iso, rr_path=f"/{name}") == data
            assert iso_file(iso, joliet_path=f"/{name}") == data
        date = iso.pvd.volume_creation_date
        assert (date.year, date.month, date.dayofmonth, date.hour, date.gmtoffset) == (2023, 11, 14, 22, 0)
    finally:
        iso.close()


def test_iso_rejects_nested_paths() -> None:
    with pytest.raises(ValueError, match="flat names"):
        write_iso({"a/b": b""}, label="cidata", epoch=EPOCH)


def test_iso_spills_large_directories_across_sectors(tmp_path: Path) -> None:
    files = {f"file-number-{i:03d}": f"{i}\n".encode() for i in range(40)}
    iso = read_iso(write_iso(files, label="cidata", epoch=EPOCH), tmp_path)
    try:
        assert iso_file(iso, rr_path="/file-number-039") == b"39\n"
        assert iso_file(iso, joliet_path="/file-number-000") == b"0\n"
    finally:
        iso.close()


def test_source_date_epoch() -> None:
    assert source_date_epoch({}) == DEFAULT_EPOCH
    assert source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"}) == 1700000000
    for bad in ("yesterday", "-5", "1.5", "100"):
        with pytest.raises(MeshseedError, match="SOURCE_DATE_EPOCH") as caught:
            source_date_epoch({"SOURCE_DATE_EPOCH": bad})
        assert caught.value.status == 2
