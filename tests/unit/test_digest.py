"""Digests are checked before they become paths: the one parser, the path helpers that
check again, and every digest images.lock holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.digest import Digest, blob_relpath, hex_part, parse_digest, parse_sha256_hex
from builder.errors import ExitStatus, MeshseedError
from builder.lock import read_lock, write_lock
from builder.store.blobs import BlobStore
from tests.unit.test_lock import current_lock

GOOD = "sha256:" + "ab" * 32
BAD = [
    "sha256:../../x",
    "sha256:" + "AB" * 32,
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha512:" + "a" * 64,
    "sha256:" + "a" * 63 + "/",
    " sha256:" + "a" * 64,
    "sha256:" + "a" * 64 + "\n",
    "",
    None,
    64,
]


def test_a_well_formed_digest_is_accepted_and_gives_its_path() -> None:
    digest = parse_digest(GOOD, "here")
    assert digest == GOOD
    assert hex_part(digest) == "ab" * 32
    assert blob_relpath(digest) == f"blobs/sha256/{'ab' * 32}"
    assert parse_sha256_hex("ab" * 32, "here") == "ab" * 32


@pytest.mark.parametrize("value", BAD)
def test_anything_else_is_refused_naming_where_it_came_from(value: object) -> None:
    with pytest.raises(MeshseedError) as caught:
        parse_digest(value, "registry.example: manifest x@sha256:1: config digest")
    assert caught.value.message == (
        f"registry.example: manifest x@sha256:1: config digest: {value!r} is not a sha256 digest "
        "(sha256: and 64 lowercase hex digits); refusing to use it"
    )
    assert caught.value.status is ExitStatus.FAILED


def test_a_string_merely_cast_to_digest_is_still_refused_as_a_path(tmp_path: Path) -> None:
    sneaky = Digest("sha256:../../x")
    for make_path in (hex_part, blob_relpath, BlobStore(tmp_path).path_of):
        with pytest.raises(MeshseedError, match="is not a sha256 digest"):
            make_path(sneaky)
    with pytest.raises(MeshseedError, match="is not a sha256 digest"):
        BlobStore(tmp_path).ensure(sneaky, lambda partial: partial.write_bytes(b""))
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize(
    ("where", "key"),
    [
        (lambda data: data["images"]["caddy"], "digest"),
        (lambda data: data["images"]["caddy"]["platforms"], "linux/amd64"),
        (lambda data: data["binaries"]["k3s"], "sha256"),
    ],
)
def test_every_digest_in_the_lock_is_checked(tmp_path: Path, where: object, key: str) -> None:
    write_lock(current_lock(), tmp_path / "images.lock")
    data = json.loads((tmp_path / "images.lock").read_text())
    where(data)[key] = "sha256:../../x" if key != "sha256" else "../../x"  # type: ignore[operator]
    (tmp_path / "images.lock").write_text(json.dumps(data))
    with pytest.raises(MeshseedError, match="is not a sha256") as caught:
        read_lock(tmp_path / "images.lock")
    assert caught.value.status is ExitStatus.BAD_INPUT
    assert caught.value.message.startswith(f"{tmp_path / 'images.lock'}: ")


def test_a_debian_package_sha256_in_the_lock_is_checked(tmp_path: Path) -> None:
    write_lock(current_lock(), tmp_path / "images.lock")
    data = json.loads((tmp_path / "images.lock").read_text())
    package = {
        "name": "hello",
        "version": "1",
        "architecture": "amd64",
        "sha256": "../../../x",
        "size": 1,
        "url": "http://deb.example/hello.deb",
        "snapshot_url": "http://snapshot.example/hello.deb",
    }
    data["debian"] = {"backup": {"request_sha256": "0" * 64, "packages": [package]}}
    (tmp_path / "images.lock").write_text(json.dumps(data))
    with pytest.raises(MeshseedError) as caught:
        read_lock(tmp_path / "images.lock")
    assert caught.value.message.startswith(f"{tmp_path / 'images.lock'}: debian.backup.hello: ")
    assert "'../../../x' is not a sha256 (64 lowercase hex digits)" in caught.value.message
    assert caught.value.status is ExitStatus.BAD_INPUT
