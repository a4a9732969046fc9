"""Debian version order, package relations and image descriptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.debian.closure import Want, parse_relations
from builder.debian.version import compare_versions, satisfies
from builder.errors import MeshseedError
from builder.images.spec import load_image_spec
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("left", "right", "order"),
    [
        ("1.0", "1.0-1", -1),
        ("1.0~rc1", "1.0", -1),
        ("1:0.1", "2.0", 1),
        ("2.0-1", "2.0-1+deb12u1", -1),
        ("1.2.10", "1.2.3", 1),
        ("3.0.22-1~deb12u2", "3.0.22-1", -1),
        ("1.0", "1.0", 0),
        ("0:1.0", "1.0", 0),
    ],
)
def test_known_orders(left: str, right: str, order: int) -> None:
    assert compare_versions(left, right) == order
    assert compare_versions(right, left) == -order


def test_relations() -> None:
    assert parse_relations("a (>= 1.0), b:any | c (<< 2), d") == [
        [Want("a", ">=", "1.0")],
        [Want("b"), Want("c", "<<", "2")],
        [Want("d")],
    ]
    assert parse_relations("old (> 1)") == [[Want("old", ">=", "1")]]
    assert satisfies("2.0-1+deb12u1", ">=", "2.0")
    assert not satisfies("2.0", ">>", "2.0")


def test_the_backup_image_description_loads() -> None:
    spec = load_image_spec(REPO / "images" / "backup")
    assert spec.backend == "debian"
    assert spec.config is not None and spec.config.user == "65532:65532"
    assert spec.debian is not None and "python3.11-minimal" in spec.debian.packages


def test_image_description_errors(tmp_path: Path) -> None:
    folder = tmp_path / "thing"
    folder.mkdir()
    (folder / "image.yaml").write_text("name: thing\ntag: '1'\nbackend: buildah\nflavour: x\n")
    with pytest.raises(MeshseedError) as caught:
        load_image_spec(folder)
    assert [str(p) for p in caught.value.problems] == [
        f"{folder}/image.yaml:3: containerfile: is required by backend: buildah",
        f"{folder}/image.yaml:4: flavour: unknown key",
    ]
    (folder / "image.yaml").write_text(
        "name: other\ntag: '1'\nbackend: buildah\ncontainerfile: Containerfile\n"
    )
    with pytest.raises(MeshseedError, match="name 'other' must match its folder 'thing'"):
        load_image_spec(folder)
