"""A hostile registry whose manifest names its config `sha256:../../x`: a digest that is
not `sha256:<64 hex>` is refused, naming the artifact, before it becomes a path, so
nothing is written outside the store.

The registry is a real HTTP server process (Python's http.server over a directory laid
out as the distribution API's URLs) on 127.0.0.1, ended by its PID.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from builder.lock import Lock, LockedFile, LockedImage, load_upstream, write_lock
from tests.conftest import EXAMPLE_SITE
from tests.integration.cli import meshseed
from tests.integration.oci_fixtures import free_port
from tests.integration.upstream_text import (
    IMAGES_LIST,
    IMAGES_LIST_PATH,
    INSTALL_PATH,
    K3S_PATH,
    MYCELIUM_PATH,
    REGISTRY,
    upstream_yaml,
)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HOSTILE = ("sha256:../../x", "sha256:../../../../x")


def hostile_manifest(config_digest: str) -> bytes:
    config = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": 2}
    return json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}
    ).encode()


@contextlib.contextmanager
def static_server(root: Path) -> Iterator[str]:
    """`python -m http.server` serving `root` on 127.0.0.1; killed by its PID afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"http.server did not start on {url}") from None
                time.sleep(0.05)
        yield url
    finally:
        process.kill()
        process.wait()


def serve_hostile_registry(root: Path, manifest: bytes) -> str:
    """Lay out `manifest` as hello:1 and busybox:1 (and by its digest), with the pinned files."""
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    for repository in ("meshseed-test/hello", "meshseed-test/busybox"):
        manifests = root / "v2" / repository / "manifests"
        manifests.mkdir(parents=True)
        for name in ("1", digest):
            (manifests / name).write_bytes(manifest)
    for relative, data in {
        K3S_PATH: b"k3s",
        INSTALL_PATH: b"#!/bin/sh\n",
        IMAGES_LIST_PATH: IMAGES_LIST,
        MYCELIUM_PATH: b"mycelium",
    }.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return digest


def every_path(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(EXAMPLE_SITE, root / "site.yaml")
    (root / "upstream.yaml").write_text(upstream_yaml())
    return root


def pins(url: str) -> tuple[str, ...]:
    return ("--upstream", "upstream.yaml", "--lock", "images.lock", "--mirror", f"{REGISTRY}={url}")


@pytest.mark.parametrize("config_digest", HOSTILE)
def test_fetch_refuses_a_digest_that_is_a_path(
    project: Path, tmp_path: Path, master_key_file: Path, config_digest: str
) -> None:
    digest = serve_hostile_registry(tmp_path / "served", hostile_manifest(config_digest))
    upstream = load_upstream(project / "upstream.yaml")
    hello = LockedImage(
        f"{REGISTRY}/meshseed-test/hello:1", digest, OCI_MANIFEST, {"linux/amd64": digest}, ("server",)
    )
    binaries = {name: LockedFile(url, "0" * 64, 3) for name, url in upstream.binaries().items()}
    lock = Lock(
        upstream.sha256,
        upstream.k3s.version,
        upstream.mycelium.version,
        upstream.platforms,
        {"hello": hello},
        binaries,
    )
    write_lock(lock, project / "images.lock")
    before = every_path(tmp_path)
    with static_server(tmp_path / "served") as url:
        result = meshseed("fetch", "hello", *pins(url), cwd=project, master_key=master_key_file)
    store = project / ".meshseed" / "store"
    created = every_path(tmp_path) - before
    assert {path for path in created if store not in path.parents and path != store} == {
        project / ".meshseed"
    }
    # Inside the store only its own skeleton: no blob, no lock for one, no entry.
    assert not [path for path in created if path.is_file() and path.parent != store / ".locks"]
    assert result.returncode == 1, result.stderr
    assert (
        f"error: image-hello: {REGISTRY} ({url}): manifest {REGISTRY}/meshseed-test/hello@{digest}: config digest: "
        f"'{config_digest}' is not a sha256 digest (sha256: and 64 lowercase hex digits); refusing to use it"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(store.glob("*-image-hello"))


def test_lock_refuses_a_digest_that_is_a_path(project: Path, tmp_path: Path, master_key_file: Path) -> None:
    serve_hostile_registry(tmp_path / "served", hostile_manifest("sha256:../../x"))
    before = every_path(tmp_path)
    with static_server(tmp_path / "served") as url:
        result = meshseed(
            "lock",
            "--only",
            "upstream",
            *pins(url),
            "--artifact-mirror",
            url,
            cwd=project,
            master_key=master_key_file,
            env={"TMPDIR": str(tmp_path)},
        )
    assert result.returncode == 1, result.stderr
    assert (
        f"error: {REGISTRY} ({url}): {REGISTRY}/meshseed-test/hello:1: config digest: "
        "'sha256:../../x' is not a sha256 digest"
    ) in result.stderr
    assert "Traceback" not in result.stderr
    assert every_path(tmp_path) == before
