"""Pinning, fetching and bundling upstream images against a real registry, skopeo and containerd."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITE
from tests.integration.certs import make_tls
from tests.integration.cli import MESHSEED, environment, tree_bytes
from tests.integration.oci_fixtures import (
    MANIFEST_ACCEPT,
    Containerd,
    Registry,
    TestImage,
    build_busybox_layout,
    http_request,
    push_layout,
    read_pushed_image,
    serve_registry,
)
from tests.integration.registry_proxy import Faults, run_proxy
from tests.integration.upstream_text import (
    IMAGES_LIST,
    IMAGES_LIST_PATH,
    INSTALL_PATH,
    K3S_PATH,
    MYCELIUM_PATH,
    REGISTRY,
    upstream_yaml,
)
from tests.tools import require

UPSTREAM = upstream_yaml()
ARTIFACTS = {
    K3S_PATH: b"\x7fELF pretend k3s binary\n" * 1000,
    INSTALL_PATH: b"#!/bin/sh\necho install\n",
    IMAGES_LIST_PATH: IMAGES_LIST,
    MYCELIUM_PATH: b"pretend archive",
}


@dataclass(frozen=True)
class Project:
    """A working directory with a site, upstream.yaml and the mirrors to reach the fixtures."""

    root: Path
    master_key: Path
    registry_url: str
    artifact_url: str

    def meshseed(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        pins = [
            "--upstream",
            "upstream.yaml",
            "--lock",
            "images.lock",
            "--mirror",
            f"{REGISTRY}={self.registry_url}",
            "--artifact-mirror",
            self.artifact_url,
        ]
        return subprocess.run(
            [MESHSEED, *args, *pins],
            cwd=self.root,
            env={**environment(self.master_key), **(env or {})},
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )

    def lock(self) -> dict[str, object]:
        result = self.meshseed("lock")
        assert result.returncode == 0, result.stderr
        return dict(json.loads((self.root / "images.lock").read_text()))


@pytest.fixture(scope="module")
def artifact_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("artifacts")
    for relative, data in ARTIFACTS.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def make_project(root: Path, master_key: Path, registry_url: str, artifact_url: str) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(EXAMPLE_SITE, root / "site.yaml")
    (root / "upstream.yaml").write_text(UPSTREAM)
    return Project(root, master_key, registry_url, artifact_url)


@pytest.fixture
def project(
    tmp_path: Path,
    master_key_file: Path,
    registry: Registry,
    test_images: dict[str, TestImage],
    artifact_server: str,
) -> Project:
    return make_project(tmp_path / "project", master_key_file, registry.url, artifact_server)


def test_lock_pins_digests_platforms_and_binaries(
    project: Project, test_images: dict[str, TestImage]
) -> None:
    lock = project.lock()
    busybox, hello = test_images["busybox"], test_images["hello"]
    images = lock["images"]
    assert isinstance(images, dict)
    assert sorted(images) == ["hello", "k3s-busybox"]
    assert images["k3s-busybox"] == {
        "reference": f"{REGISTRY}/meshseed-test/busybox:1",
        "digest": busybox.index_digest,
        "media_type": busybox.media_type,
        "platforms": busybox.platform_digests,
        "roles": ["agent", "backup", "server"],
    }
    assert images["hello"]["digest"] == hello.index_digest
    assert images["hello"]["platforms"] == {"linux/amd64": hello.index_digest}
    binaries = lock["binaries"]
    assert isinstance(binaries, dict)
    for name, suffix in (
        ("k3s", "/k3s"),
        ("k3s-install.sh", "/install.sh"),
        ("mycelium", "/mycelium.tar.gz"),
    ):
        data = next(value for path, value in ARTIFACTS.items() if path.endswith(suffix))
        assert binaries[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert binaries[name]["size"] == len(data)
    assert project.meshseed("lock", "--check").returncode == 0
    before = (project.root / "images.lock").read_bytes()
    assert project.lock() and (project.root / "images.lock").read_bytes() == before


def test_a_stale_lock_is_named_and_refused(project: Project) -> None:
    project.lock()
    upstream = project.root / "upstream.yaml"
    upstream.write_text(upstream.read_text().replace("hello:1", "hello:2"))
    check = project.meshseed("lock", "--check")
    assert check.returncode == 1
    assert (
        "images.lock: images.hello: pins registry.meshseed.test/meshseed-test/hello:1, upstream.yaml asks for"
        in (check.stderr)
    )
    assert (
        "images.lock: upstream_sha256: images/upstream.yaml changed since the lock was written"
        in check.stderr
    )
    build = project.meshseed("build", "--airgap")
    assert build.returncode == 1
    assert "images.hello" in build.stderr
    assert not (project.root / "dist").exists()
    (project.root / "images.lock").unlink()
    missing = project.meshseed("lock", "--check")
    assert (missing.returncode, missing.stderr.strip()) == (
        1,
        "error: images.lock: missing (run `meshseed lock` (it needs access to the registries))",
    )


def skopeo_layout(registry: Registry, image: TestImage, target: Path) -> Path:
    skopeo = require("skopeo", "skopeo")
    subprocess.run(
        [
            skopeo,
            "copy",
            "--src-tls-verify=false",
            "--preserve-digests",
            f"docker://{image.reference(registry)}",
            f"oci:{target}:latest",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return target


def blob_set(layout: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (layout / "blobs" / "sha256").iterdir()}


def test_fetch_matches_skopeo_and_shares_layers(
    project: Project, registry: Registry, test_images: dict[str, TestImage], tmp_path: Path
) -> None:
    project.lock()
    for name in ("hello", "k3s-busybox"):
        result = project.meshseed("fetch", name, "-o", str(tmp_path / name))
        assert result.returncode == 0, result.stderr
    ours = tmp_path / "hello"
    theirs = skopeo_layout(registry, test_images["hello"], tmp_path / "skopeo-hello")
    assert blob_set(ours) == blob_set(theirs)
    index = json.loads((ours / "index.json").read_text())
    assert index["manifests"][0]["digest"] == test_images["hello"].index_digest
    assert (
        index["manifests"][0]["annotations"]["io.containerd.image.name"]
        == f"{REGISTRY}/meshseed-test/hello:1"
    )
    skopeo = require("skopeo", "skopeo")
    inspected = json.loads(
        subprocess.run([skopeo, "inspect", f"oci:{ours}"], capture_output=True, check=True).stdout
    )
    assert inspected["Layers"] == list(test_images["hello"].layer_digests)
    store = project.root / ".meshseed" / "store"
    shared = test_images["busybox"].layer_digests[0]
    assert shared in test_images["hello"].layer_digests
    copies = list(store.glob(f"*-image-*/blobs/sha256/{shared.split(':')[1]}"))
    assert len(copies) == 2
    assert (
        copies[0].stat().st_ino
        == copies[1].stat().st_ino
        == (store / ".blobs" / "sha256" / shared.split(":")[1]).stat().st_ino
    )


def test_a_tampered_image_entry_is_not_exported(project: Project, tmp_path: Path) -> None:
    project.lock()
    assert project.meshseed("fetch", "hello").returncode == 0
    (entry,) = (project.root / ".meshseed" / "store").glob("*-image-hello")
    entry.chmod(0o755)
    (entry / "index.json").chmod(0o644)
    (entry / "index.json").write_text('{"schemaVersion":2,"manifests":[]}')
    result = project.meshseed("fetch", "hello", "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert (
        f"error: store entry {entry.name} is corrupt: index.json changed (recorded regular sha256:"
        in result.stderr
    )
    assert not (tmp_path / "out").exists()


def test_a_wrong_blob_fails_the_fetch_and_keeps_nothing(
    tmp_path: Path, master_key_file: Path, artifact_server: str
) -> None:
    with serve_registry(tmp_path / "registry") as own:
        layout = build_busybox_layout(tmp_path / "build")
        for repository in ("meshseed-test/hello", "meshseed-test/busybox"):
            push_layout(own, layout, repository)
        image = read_pushed_image(own, "meshseed-test/hello", "1")
        project = make_project(tmp_path / "project", master_key_file, own.url, artifact_server)
        (
            Path(artifact_server.replace("http://", "/nonexistent/")),
        )  # the artifact server is shared and untouched
        project.lock()
        layer = image.layer_digests[0]
        own.blob_path(layer).write_bytes(b"not the layer you are looking for")
        result = project.meshseed("fetch", "hello", "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"blob {layer} of {REGISTRY}/meshseed-test/hello has the wrong content" in result.stderr
    assert f"{REGISTRY} ({own.url})" in result.stderr
    assert "nothing was kept" in result.stderr
    store = project.root / ".meshseed" / "store"
    assert not list(store.glob("*-image-hello"))
    assert not (store / ".blobs" / "sha256" / layer.split(":")[1]).exists()
    assert not [p for p in (store / ".blobs" / "partial").iterdir() if not p.name.endswith(".lock")]
    assert not (tmp_path / "out").exists()


def test_token_auth_retries_resume_and_https(
    project: Project, registry: Registry, test_images: dict[str, TestImage], tmp_path: Path
) -> None:
    project.lock()
    layer = test_images["hello"].layer_digests[-1]
    faults = Faults(
        require_token=True,
        statuses=[("/manifests/", 429), ("/blobs/", 503), ("/blobs/", 500)],
        truncate_once={layer},
    )
    tls, ca_file = make_tls(tmp_path)
    proxy_run = run_proxy(registry.url, faults, tls)
    proxy = next(proxy_run)
    try:
        mirrored = Project(project.root, project.master_key, proxy.url, project.artifact_url)
        result = mirrored.meshseed(
            "fetch", "hello", "-o", str(tmp_path / "out"), env={"SSL_CERT_FILE": str(ca_file)}
        )
    finally:
        proxy_run.close()
    assert result.returncode == 0, result.stderr
    assert faults.token_requests, "the client never asked for a token"
    assert "scope=repository%3Ameshseed-test%2Fhello%3Apull" in faults.token_requests[0]
    assert faults.statuses == []
    assert any(f"/blobs/{layer} range=bytes=" in line for line in faults.log), "\n".join(faults.log)
    assert blob_set(tmp_path / "out") == blob_set(
        skopeo_layout(registry, test_images["hello"], tmp_path / "skopeo")
    )


def test_airgap_bundles_are_reproducible_and_containerd_imports_them(
    project: Project, test_images: dict[str, TestImage], containerd: Containerd, tmp_path: Path
) -> None:
    project.lock()
    first = project.meshseed("build", "--airgap")
    assert first.returncode == 0, first.stderr
    airgap = project.root / "dist" / "airgap"
    # The example site has servers and a backup node, no agents: so no agent bundle.
    assert sorted(p.name for p in airgap.iterdir()) == ["backup.tar.zst", "binaries", "server.tar.zst"]
    assert sorted(p.name for p in (airgap / "binaries").iterdir()) == ["k3s", "k3s-install.sh", "mycelium"]
    assert (airgap / "binaries" / "k3s").stat().st_mode & 0o777 == 0o755
    other = make_project(tmp_path / "again", project.master_key, project.registry_url, project.artifact_url)
    shutil.copy(project.root / "images.lock", other.root / "images.lock")
    plain = other.meshseed("build", "--airgap", "--bundle-compression", "none")
    assert plain.returncode == 0, plain.stderr
    zstd = require("zstd", "zstd")
    for role in ("server", "backup"):
        unpacked = subprocess.run(
            [zstd, "-dc", str(airgap / f"{role}.tar.zst")], capture_output=True, check=True
        )
        assert unpacked.stdout == (other.root / "dist" / "airgap" / f"{role}.tar").read_bytes()
    again = other.meshseed("build", "--airgap", "-o", "dist-zstd")
    assert again.returncode == 0, again.stderr
    assert tree_bytes(other.root / "dist-zstd" / "airgap") == tree_bytes(airgap)

    busybox, hello = test_images["busybox"], test_images["hello"]
    containerd.ctr(
        "images",
        "import",
        "-",
        input=subprocess.run(
            [zstd, "-dc", str(airgap / "server.tar.zst")], capture_output=True, check=True
        ).stdout,
    )
    containerd.ctr("images", "import", str(other.root / "dist" / "airgap" / "backup.tar"))
    listed = containerd.ctr("images", "ls").stdout.decode()
    rows = {line.split()[0]: line.split() for line in listed.splitlines()[1:]}
    assert busybox.index_digest in rows[f"{REGISTRY}/meshseed-test/busybox:1"]
    assert hello.index_digest in rows[f"{REGISTRY}/meshseed-test/hello:1"]
    # Also under the names the manifests give, by digest: the kubelet looks for exactly that.
    assert busybox.index_digest in rows[f"{REGISTRY}/meshseed-test/busybox@{busybox.index_digest}"]
    assert hello.index_digest in rows[f"{REGISTRY}/meshseed-test/hello@{hello.index_digest}"]
    ran = containerd.run(
        f"{REGISTRY}/meshseed-test/hello:1", "/bin/sh", "-c", "cat /hello.txt; echo ran-from-bundle"
    )
    assert b"ran-from-bundle" in ran.stdout


def test_bundle_zstd_window_fits_k3s(project: Project) -> None:
    project.lock()
    assert project.meshseed("build", "--airgap").returncode == 0
    frame = (project.root / "dist" / "airgap" / "server.tar.zst").read_bytes()[:18]
    assert frame[:4] == b"\x28\xb5\x2f\xfd"
    descriptor = frame[4]
    single_segment = descriptor & 0x20
    if not single_segment:
        window_log = 10 + (frame[5] >> 3)
        assert window_log <= 25


def test_an_expired_token_is_renewed(
    project: Project, registry: Registry, test_images: dict[str, TestImage], tmp_path: Path
) -> None:
    project.lock()
    faults = Faults(require_token=True, token_uses=2)
    proxy_run = run_proxy(registry.url, faults)
    proxy = next(proxy_run)
    try:
        mirrored = Project(project.root, project.master_key, proxy.url, project.artifact_url)
        result = mirrored.meshseed("fetch", "hello", "-o", str(tmp_path / "out"))
    finally:
        proxy_run.close()
    assert result.returncode == 0, result.stderr
    assert len(faults.token_requests) >= 2
    assert blob_set(tmp_path / "out") == blob_set(
        skopeo_layout(registry, test_images["hello"], tmp_path / "skopeo")
    )


def test_publish_upstream_mirrors_each_pinned_index_whole(
    project: Project, test_images: dict[str, TestImage], tmp_path: Path
) -> None:
    project.lock()
    assert project.meshseed("build").returncode == 0
    with serve_registry(tmp_path / "mirror") as mirror:

        def publish() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [MESHSEED, "publish", "--registry", f"{mirror.host}/mirror", "--upstream", "--json"],
                cwd=project.root,
                env=environment(project.master_key),
                capture_output=True,
                text=True,
                check=False,
            )

        # A mirror must serve the index the lock pins, so every platform must be at hand.
        refused = publish()
        assert refused.returncode == 1
        assert "meshseed fetch --all-platforms hello k3s-busybox" in refused.stderr
        fetched = project.meshseed("fetch", "--all-platforms", "hello", "k3s-busybox")
        assert fetched.returncode == 0, fetched.stderr

        result = publish()
        assert result.returncode == 0, result.stderr
        published = json.loads(result.stdout)
        # busybox shares its layer with hello, pushed first: mounted across repositories.
        assert published["blobs"]["mounted"] >= 1
        report = {image["name"]: image for image in published["images"]}
        busybox = test_images["busybox"]
        assert report["k3s-busybox"]["digest"] == busybox.index_digest
        assert report["k3s-busybox"]["reference"] == (
            f"{mirror.host}/mirror/meshseed-test/busybox:1@{busybox.index_digest}"
        )
        for digest in [busybox.index_digest, *busybox.platform_digests.values()]:
            response = http_request(
                f"{mirror.url}/v2/mirror/meshseed-test/busybox/manifests/{digest}",
                method="HEAD",
                accept=MANIFEST_ACCEPT,
            )
            assert response.status == 200, digest
        again = publish()
        assert again.returncode == 0
        assert all(image["changed"] == [] for image in json.loads(again.stdout)["images"])
