"""Files joined from store files (builder/compose.py): zstd frames end to end make one
stream, every part and the whole are checked, and a changed byte is refused."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import zstandard

from builder.compose import Composite, Part, composed_target, composite_name, decode, describe, encode, join
from builder.det.compress import zstd_writer
from builder.errors import MeshseedError

HEAD, SEED, TAIL = b"head " * 1000, b"seed" + bytes(4096), b"tail " * 1000


def frame(path: Path, data: bytes) -> None:
    with path.open("wb") as out, zstd_writer(out) as compressed:
        compressed.write(data)


@pytest.fixture
def outputs(tmp_path: Path) -> dict[str, Path]:
    for name in ("role", "node"):
        (tmp_path / name).mkdir()
    frame(tmp_path / "role" / "head.zst", HEAD)
    frame(tmp_path / "node" / "slot.zst", SEED)
    frame(tmp_path / "role" / "tail.zst", TAIL)
    return {"role": tmp_path / "role", "node": tmp_path / "node"}


def recipe(outputs: dict[str, Path], tmp_path: Path) -> Composite:
    parts = [Part("role", "head.zst", ""), Part("node", "slot.zst", ""), Part("role", "tail.zst", "")]
    described = describe(parts, [outputs[p.derivation] / p.path for p in parts], private=True)
    stored = tmp_path / composite_name("disk.raw.zst")
    stored.write_text(encode(described))
    assert composed_target(stored.name) == "disk.raw.zst" and composed_target("seed.iso") is None
    return decode(stored)


def test_joined_frames_decompress_to_the_parts_in_order(outputs: dict[str, Path], tmp_path: Path) -> None:
    composite = recipe(outputs, tmp_path)
    joined = io.BytesIO()
    join(composite, outputs, joined)
    reader = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(joined.getvalue()), read_across_frames=True
    )
    assert reader.read() == HEAD + SEED + TAIL
    assert composite.size == len(joined.getvalue()) and composite.private


def test_a_changed_part_is_refused_naming_it(outputs: dict[str, Path], tmp_path: Path) -> None:
    composite = recipe(outputs, tmp_path)
    frame(outputs["node"] / "slot.zst", b"other seed")
    with pytest.raises(MeshseedError, match=r"node/slot\.zst has sha256:"):
        join(composite, outputs, io.BytesIO())


def test_a_part_from_outside_the_build_is_refused(outputs: dict[str, Path], tmp_path: Path) -> None:
    composite = recipe(outputs, tmp_path)
    with pytest.raises(MeshseedError, match="cannot join a file from node"):
        join(composite, {"role": outputs["role"]}, io.BytesIO())
