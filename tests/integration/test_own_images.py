"""Images we build ourselves: Debian packages by sha256 (path 1) and Containerfiles (buildah)."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from subprocess import CompletedProcess

import httpx
import pytest

from builder.debian.closure import Universe, resolve_closure
from builder.debian.index import Source, load_index
from builder.errors import MeshseedError
from tests.conftest import EXAMPLE_SITE
from tests.integration.cli import meshseed as run_meshseed
from tests.integration.debian_fixtures import DebRepo, expected_closure
from tests.tools import require

IMAGE_YAML = """\
name: mini
tag: "1.0"
backend: debian
debian:
  architecture: amd64
  keyring: {keyring}
  snapshot: http://127.0.0.1:9/snapshot
  sources:
    - url: {url}
      suite: bookworm
    - url: {security_url}
      suite: bookworm-security
  packages: [mini-app]
files:
  - src: app
    dest: /opt/app
config:
  entrypoint: [/bin/sh, -c]
  cmd: ["/usr/bin/mini-app; cat /opt/app/message.txt; cat /usr/lib/mini/libfoo.txt; id -u"]
  env: [GREETING=hello]
  labels: [org.example.kind=test]
  ports: [8080/tcp]
"""
CONTAINERFILE = """\
ARG MINI
FROM ${MINI}
COPY extra.txt /opt/extra.txt
"""
DERIVED_YAML = """\
name: derived
tag: "1.0"
backend: buildah
containerfile: Containerfile
base_images: [mini]
"""


def make_project(root: Path, repo: DebRepo, *, derived: bool = False) -> Path:
    images = root / "images"
    (images / "mini" / "app").mkdir(parents=True)
    (images / "mini" / "image.yaml").write_text(
        IMAGE_YAML.format(keyring=repo.keyring, url=repo.url, security_url=repo.security_url)
    )
    (images / "mini" / "app" / "message.txt").write_text("message from the project layer\n")
    if derived:
        (images / "derived").mkdir()
        (images / "derived" / "image.yaml").write_text(DERIVED_YAML)
        (images / "derived" / "Containerfile").write_text(CONTAINERFILE)
        (images / "derived" / "extra.txt").write_text("added by buildah\n")
    shutil.copy(EXAMPLE_SITE, root / "site.yaml")
    return root


def meshseed(root: Path, key: Path, *args: str, env: dict[str, str] | None = None) -> CompletedProcess[str]:
    return run_meshseed(*args, cwd=root, master_key=key, env=env)


def build_images(root: Path, key: Path, store: str = ".meshseed/store", out: str = "dist") -> Path:
    for args in (["lock", "--only", "debian"], ["build", "--images", "--store", store, "-o", out]):
        result = meshseed(root, key, *args)
        assert result.returncode == 0, result.stderr
    return root / out / "images"


def manifest_of(layout: Path) -> dict[str, object]:
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    return dict(json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text()))


def layer_members(layout: Path, index: int) -> dict[str, tarfile.TarInfo]:
    manifest = manifest_of(layout)
    layers = manifest["layers"]
    assert isinstance(layers, list)
    blob = layout / "blobs" / "sha256" / layers[index]["digest"].split(":")[1]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read_bytes()))) as archive:
        return {member.name: member for member in archive.getmembers()}


def podman_run(layout: Path, tag: str) -> subprocess.CompletedProcess[str]:
    podman = require("podman", "podman")
    require("runc", "runc")
    # podman refuses a runroot longer than 50 characters, so its state goes in a short directory.
    with tempfile.TemporaryDirectory(prefix="podman-", dir="/tmp") as state:
        storage = ["--root", f"{state}/root", "--runroot", f"{state}/run", "--storage-driver", "vfs"]
        engine = ["--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"]
        limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
        argv = [podman, *storage, *engine, "run", "--rm", "--pull", "never", "--network", "none", *limits]
        return subprocess.run(
            [*argv, f"oci:{layout}:{tag}"], capture_output=True, text=True, check=False, timeout=300
        )


def test_closure_of_the_local_archive(deb_repo: DebRepo) -> None:
    with httpx.Client() as client:
        candidates = [
            *load_index(client, Source(deb_repo.url, "bookworm"), "amd64", deb_repo.keyring),
            *load_index(
                client, Source(deb_repo.security_url, "bookworm-security"), "amd64", deb_repo.keyring
            ),
        ]
    universe = Universe(candidates, "amd64")
    closure = {c.name: c.version for c in resolve_closure(["mini-app"], universe)}
    assert closure == expected_closure()
    assert {c.name for c in resolve_closure(["mini-arch-all"], universe)} == {"mini-arch-all", "mini-base"}


def test_index_with_a_bad_signature_is_refused(deb_repo: DebRepo, tmp_path: Path) -> None:
    other_keyring = tmp_path / "empty.gpg"
    other_keyring.write_bytes(b"")
    with httpx.Client() as client, pytest.raises(MeshseedError, match="gpgv failed"):
        load_index(client, Source(deb_repo.url, "bookworm"), "amd64", other_keyring)


def test_path_one_image_runs_is_inspectable_and_reproducible(
    deb_repo: DebRepo, tmp_path: Path, master_key_file: Path
) -> None:
    root = make_project(tmp_path / "project", deb_repo)
    images = build_images(root, master_key_file)
    lock = json.loads((root / "images.lock").read_text())["debian"]["mini"]["packages"]
    assert {p["name"]: p["version"] for p in lock} == expected_closure()
    for package in lock:
        assert package["sha256"] == deb_repo.packages[f"{package['name']}={package['version']}"]["SHA256"]
    layout = images / "mini"

    ran = podman_run(layout, "1.0")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == [
        "mini-app ok",
        "message from the project layer",
        "libfoo 2.0-1+deb12u1",
        "65532",
    ]
    skopeo = require("skopeo", "skopeo")
    inspected = json.loads(
        subprocess.run(
            [skopeo, "inspect", f"oci:{layout}:1.0"], capture_output=True, check=True, text=True
        ).stdout
    )
    assert inspected["Architecture"] == "amd64"
    assert inspected["Labels"] == {"org.example.kind": "test"}
    assert inspected["Env"] == ["GREETING=hello"]
    manifest = manifest_of(layout)
    annotations = manifest["annotations"]
    assert isinstance(annotations, dict)
    assert annotations["dev.meshseed.lock.digest"].startswith("sha256:")
    assert annotations["org.opencontainers.image.revision"].startswith("sha256:")

    packages = layer_members(layout, 0)
    assert packages["usr/bin/mini-suid"].mode == 0o4755
    assert packages["bin/sh"].issym() and packages["bin/sh"].linkname == "busybox"
    assert "usr/share/unrelated/file" not in packages
    assert {m.mtime for m in packages.values()} == {315532800}
    assert packages["home/nonroot"].uid == 65532
    project = layer_members(layout, 1)
    assert sorted(project) == ["opt", "opt/app", "opt/app/message.txt"]

    again = build_images(root, master_key_file, store="other-store", out="dist-again")
    assert manifest_of(again / "mini") == manifest
    assert (again / "mini" / "index.json").read_bytes() == (layout / "index.json").read_bytes()


def test_dpkg_status_lists_the_installed_packages(
    deb_repo: DebRepo, tmp_path: Path, master_key_file: Path
) -> None:
    images = build_images(make_project(tmp_path / "project", deb_repo), master_key_file)
    members = layer_members(images / "mini", 0)
    assert "var/lib/dpkg/info/mini-app.list" in members
    manifest = manifest_of(images / "mini")
    layers = manifest["layers"]
    assert isinstance(layers, list)
    blob = images / "mini" / "blobs" / "sha256" / layers[0]["digest"].split(":")[1]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read_bytes()))) as archive:
        status_file = archive.extractfile("var/lib/dpkg/status")
        assert status_file is not None
        status = status_file.read().decode()
    stanzas = [
        dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        for block in status.split("\n\n")
    ]
    assert {s["Package"]: s["Version"] for s in stanzas} == expected_closure()
    assert {s["Status"] for s in stanzas} == {"install ok installed"}


def test_a_deb_that_does_not_match_its_sha256_is_refused(
    deb_repo: DebRepo, tmp_path: Path, master_key_file: Path
) -> None:
    root = make_project(tmp_path / "project", deb_repo)
    assert meshseed(root, master_key_file, "lock", "--only", "debian").returncode == 0
    lock_file = root / "images.lock"
    lock = json.loads(lock_file.read_text())
    victim = lock["debian"]["mini"]["packages"][0]
    victim["sha256"] = "0" * 64
    lock_file.write_text(json.dumps(lock))
    result = meshseed(root, master_key_file, "build", "--images")
    assert result.returncode == 1
    assert f"{victim['url']}: has sha256 " in result.stderr
    assert f"the lock pins {'0' * 64}; nothing was kept" in result.stderr
    store = root / ".meshseed" / "store"
    assert not list(store.glob("*-image-own-mini"))
    assert not (store / ".blobs" / "sha256" / ("0" * 64)).exists()


def test_changed_packages_make_the_lock_stale(
    deb_repo: DebRepo, tmp_path: Path, master_key_file: Path
) -> None:
    root = make_project(tmp_path / "project", deb_repo)
    assert meshseed(root, master_key_file, "lock", "--only", "debian").returncode == 0
    spec = root / "images" / "mini" / "image.yaml"
    spec.write_text(spec.read_text().replace("packages: [mini-app]", "packages: [mini-app, mini-unrelated]"))
    check = meshseed(root, master_key_file, "lock", "--check", "--only", "debian")
    assert check.returncode == 1
    assert (
        "images.lock: debian.mini: images/mini/image.yaml asks for other packages or sources" in check.stderr
    )
    assert meshseed(root, master_key_file, "build", "--images").returncode == 1


def test_buildah_backend_builds_on_our_image_reproducibly(
    deb_repo: DebRepo, tmp_path: Path, master_key_file: Path
) -> None:
    require("buildah", "buildah")
    root = make_project(tmp_path / "project", deb_repo, derived=True)
    images = build_images(root, master_key_file)
    again = build_images(root, master_key_file, store="other-store", out="dist-again")
    assert manifest_of(images / "derived") == manifest_of(again / "derived")
    index = json.loads((images / "derived" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "meshseed.local/derived:1.0"
    ran = podman_run(images / "derived", "1.0")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[0] == "mini-app ok"
    base_layers = manifest_of(images / "mini")["layers"]
    derived_layers = manifest_of(images / "derived")["layers"]
    assert isinstance(base_layers, list) and isinstance(derived_layers, list)
    assert len(derived_layers) == len(base_layers) + 1


def test_docker_backend_without_an_engine_names_what_to_install(
    deb_repo: DebRepo, tmp_path: Path, master_key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_project(tmp_path / "project", deb_repo, derived=True)
    spec = root / "images" / "derived" / "image.yaml"
    spec.write_text(spec.read_text().replace("backend: buildah", "backend: docker"))
    assert meshseed(root, master_key_file, "lock", "--only", "debian").returncode == 0
    result = meshseed(
        root, master_key_file, "build", "--images", env={"DOCKER_HOST": f"unix://{tmp_path}/x.sock"}
    )
    assert result.returncode == 1
    assert "backend docker needs a running Docker Engine" in result.stderr
    assert "Debian package docker.io" in result.stderr
    assert "Traceback" not in result.stderr
