"""upstream.yaml loading and images.lock reading, writing and staleness checks."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace
from pathlib import Path

import pytest

from builder.errors import ExitStatus, MeshseedError
from builder.lock import (
    EMPTY_LOCK,
    Lock,
    LockedFile,
    LockedImage,
    LockFiles,
    UpstreamPart,
    check_lock,
    load_lock,
    load_upstream,
    read_lock,
    write_lock,
)
from tests.conftest import REPO

DIGEST = "sha256:" + "1" * 64
AMD64 = "sha256:" + "2" * 64


def current_lock(upstream_path: Path = REPO / "images" / "upstream.yaml") -> Lock:
    upstream = load_upstream(upstream_path)
    images = {
        image.name: LockedImage(
            image.image,
            DIGEST,
            "application/vnd.oci.image.index.v1+json",
            {"linux/amd64": AMD64},
            tuple(image.roles),
            image.tutor,
        )
        for image in upstream.images
    }
    binaries = {name: LockedFile(url, "3" * 64, 10) for name, url in upstream.binaries().items()}
    return Lock(
        upstream.sha256, upstream.k3s.version, upstream.mycelium.version, upstream.platforms, images, binaries
    )


def test_the_repository_upstream_file_loads() -> None:
    upstream = load_upstream(REPO / "images" / "upstream.yaml")
    names = {image.name for image in upstream.images}
    assert {"openedx", "couchdb", "caddy", "prometheus", "node-exporter"} <= names
    assert upstream.binaries()["k3s"].endswith(f"/{upstream.k3s.version}/k3s")
    assert "linux/amd64" in upstream.platforms


def test_upstream_errors_name_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "upstream.yaml"
    text = (REPO / "images" / "upstream.yaml").read_text()
    path.write_text(text.replace("docker.io/library/couchdb:3.4.3", "docker.io/library/couchdb"))
    with pytest.raises(MeshseedError) as caught:
        load_upstream(path)
    line = text.splitlines().index("    image: docker.io/library/couchdb:3.4.3") + 1
    assert [str(p) for p in caught.value.problems] == [
        f"{path}:{line}: images[6].image: 'docker.io/library/couchdb': name an image by tag; "
        "`meshseed lock` pins its digest"
    ]
    assert caught.value.status is ExitStatus.BAD_INPUT


def test_a_current_lock_round_trips_and_checks_clean(tmp_path: Path) -> None:
    lock = current_lock()
    write_lock(lock, tmp_path / "images.lock")
    text = (tmp_path / "images.lock").read_text()
    assert json.loads(text)["version"] == 1
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    again = read_lock(tmp_path / "images.lock")
    assert again == lock
    assert check_lock(load_upstream(REPO / "images" / "upstream.yaml"), again, tmp_path / "images.lock") == []
    assert again.images["couchdb"].pinned == f"docker.io/library/couchdb@{DIGEST}"


def test_stale_and_missing_entries_are_named(tmp_path: Path) -> None:
    upstream = load_upstream(REPO / "images" / "upstream.yaml")
    lock = current_lock()
    images = dict(lock.images)
    del images["caddy"]
    images["redis"] = replace(images["redis"], reference="docker.io/library/redis:6")
    binaries = dict(lock.binaries)
    del binaries["mycelium"]
    stale = replace(lock, upstream_sha256="0" * 64, images=images, binaries=binaries)
    problems = [str(p) for p in check_lock(upstream, stale, Path("images.lock"))]
    assert problems == [
        "images.lock: upstream_sha256: images/upstream.yaml changed since the lock was written (run `meshseed lock`)",
        "images.lock: images.redis: pins docker.io/library/redis:6, upstream.yaml asks for "
        "docker.io/library/redis:7.4.10 (run `meshseed lock`)",
        "images.lock: images.caddy: is missing (run `meshseed lock`)",
        "images.lock: binaries.mycelium: is missing (run `meshseed lock`)",
    ]


def test_unreadable_locks(tmp_path: Path) -> None:
    with pytest.raises(MeshseedError, match=r"images\.lock: missing") as caught:
        read_lock(tmp_path / "images.lock")
    assert caught.value.status is ExitStatus.FAILED
    broken = tmp_path / "broken.lock"
    broken.write_text('{\n  "version": 1,\n  oops\n}\n')
    with pytest.raises(MeshseedError, match=r"broken.lock:3: not valid JSON") as caught:
        read_lock(broken)
    assert caught.value.status is ExitStatus.BAD_INPUT
    broken.write_text(json.dumps({**current_lock().as_json(), "version": 9}))
    with pytest.raises(MeshseedError, match="this meshseed reads version 1"):
        read_lock(broken)


def lock_files(tmp_path: Path) -> LockFiles:
    return LockFiles(tmp_path / "images.lock", REPO / "images" / "upstream.yaml", REPO / "images")


def test_load_lock_reads_a_missing_lock_as_empty_only_where_nothing_is_relied_on(tmp_path: Path) -> None:
    files = lock_files(tmp_path)
    assert load_lock(files, upstream=UpstreamPart.IF_PINNED) == EMPTY_LOCK
    for upstream, debian in ((UpstreamPart.REQUIRED, False), (UpstreamPart.IF_PINNED, True)):
        with pytest.raises(MeshseedError, match=r"images\.lock: missing"):
            load_lock(files, upstream=upstream, debian=debian)


def test_load_lock_checks_the_upstream_part_as_asked(tmp_path: Path) -> None:
    files = lock_files(tmp_path)
    unpinned = replace(current_lock(), upstream_sha256="")
    write_lock(unpinned, files.lock)
    assert not load_lock(files, upstream=UpstreamPart.IF_PINNED).pins_upstream
    with pytest.raises(MeshseedError) as caught:
        load_lock(files, upstream=UpstreamPart.REQUIRED)
    assert [p.path for p in caught.value.problems] == ["upstream_sha256"]
    stale = replace(current_lock(), k3s_version="v0.0.1")
    write_lock(stale, files.lock)
    assert load_lock(files, upstream=UpstreamPart.UNCHECKED) == stale
    for part in (UpstreamPart.IF_PINNED, UpstreamPart.REQUIRED):
        with pytest.raises(MeshseedError, match="does not match") as caught:
            load_lock(files, upstream=part)
        assert [p.path for p in caught.value.problems] == ["k3s.version"]


def test_load_lock_names_every_stale_part_at_once(tmp_path: Path) -> None:
    files = lock_files(tmp_path)
    write_lock(replace(current_lock(), k3s_version="v0.0.1"), files.lock)
    with pytest.raises(MeshseedError) as caught:
        load_lock(files, upstream=UpstreamPart.REQUIRED, debian=True)
    assert sorted(p.path for p in caught.value.problems) == ["debian.backup", "k3s.version"]


def test_a_lock_that_fills_another_tutor_setting_is_stale(tmp_path: Path) -> None:
    lock = current_lock()
    images = {**lock.images, "mfe": dataclasses.replace(lock.images["mfe"], tutor=None)}
    problems = check_lock(
        load_upstream(REPO / "images" / "upstream.yaml"),
        dataclasses.replace(lock, images=images),
        tmp_path / "images.lock",
    )
    assert [(p.path, p.message) for p in problems] == [
        ("images.mfe", "fills Tutor's None, upstream.yaml says MFE_DOCKER_IMAGE")
    ]


def test_an_upstream_image_may_not_take_the_name_of_one_we_build(tmp_path: Path) -> None:
    # What the README once asked for: our published backup image listed in upstream.yaml.
    upstream = tmp_path / "upstream.yaml"
    upstream.write_text(
        (REPO / "images" / "upstream.yaml").read_text()
        + "  - name: backup\n    image: registry.example.org/meshseed/backup:0.1.0\n    roles: [backup]\n"
    )
    write_lock(current_lock(upstream), tmp_path / "images.lock")
    files = LockFiles(tmp_path / "images.lock", upstream, REPO / "images")
    with pytest.raises(MeshseedError) as raised:
        load_lock(files, upstream=UpstreamPart.IF_PINNED)
    assert raised.value.status is ExitStatus.BAD_INPUT
    assert f"{upstream}: images: backup: is the name of our own image (images/backup/)" in str(raised.value)
    assert "remove the entry" in str(raised.value)
    # Without our images beside it, the name is free.
    assert "backup" in load_lock(replace(files, images_dir=tmp_path), upstream=UpstreamPart.IF_PINNED).images
