"""The OCI fixtures work: the registry serves the test images, skopeo pulls them, containerd runs them."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.integration import oci_fixtures
from tests.integration.oci_fixtures import (
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    Containerd,
    Registry,
    TestImage,
    build_busybox_layout,
    http_request,
    layout_manifest_digest,
    push_image_with_random_layer,
    run,
    sha256_digest,
    write_oci_archive,
)
from tests.tools import require

pytestmark = pytest.mark.integration


def skopeo_inspect(registry: Registry, image: TestImage, *options: str) -> dict[str, Any]:
    skopeo = require("skopeo", "skopeo")
    output = run([skopeo, "inspect", "--tls-verify=false", *options, f"docker://{image.reference(registry)}"])
    inspected: dict[str, Any] = json.loads(output.stdout)
    return inspected


def test_registry_answers_v2(registry: Registry) -> None:
    response = http_request(f"{registry.url}/v2/")
    assert response.status == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"
    assert registry.url == f"http://{registry.host}"
    assert registry.host.startswith("127.0.0.1:")
    assert registry.root.is_dir()


def test_images_are_what_the_registry_serves(registry: Registry, test_images: dict[str, TestImage]) -> None:
    busybox, hello = test_images["busybox"], test_images["hello"]
    assert busybox.media_type == OCI_INDEX
    assert set(busybox.platform_digests) == {"linux/amd64", "linux/arm64"}
    assert hello.media_type == OCI_MANIFEST
    assert hello.platform_digests == {"linux/amd64": hello.index_digest}
    assert len(busybox.layer_digests) == 1
    assert len(hello.layer_digests) == 2
    # De-duplication tests rely on this: one blob, stored once, used by both images.
    assert hello.layer_digests[0] == busybox.layer_digests[0]

    for image in (busybox, hello):
        url = f"{registry.url}/v2/{image.repository}/manifests/{image.tag}"
        response = http_request(url, accept=MANIFEST_ACCEPT)
        assert response.status == 200, url
        assert response.headers["content-type"] == image.media_type
        assert response.headers["docker-content-digest"] == image.index_digest
        assert sha256_digest(response.body) == image.index_digest

    for platform, digest in busybox.platform_digests.items():
        manifest = http_request(
            f"{registry.url}/v2/{busybox.repository}/manifests/{digest}", accept=MANIFEST_ACCEPT
        )
        assert manifest.status == 200
        assert sha256_digest(manifest.body) == digest
        config_digest = json.loads(manifest.body)["config"]["digest"]
        config = json.loads(
            http_request(f"{registry.url}/v2/{busybox.repository}/blobs/{config_digest}").body
        )
        assert f"{config['os']}/{config['architecture']}" == platform
        assert config["config"]["Entrypoint"] == ["/bin/sh"]
        if platform == "linux/amd64":
            assert (
                tuple(layer["digest"] for layer in json.loads(manifest.body)["layers"])
                == busybox.layer_digests
            )

    for digest in {*busybox.layer_digests, *hello.layer_digests}:
        blob = registry.blob_path(digest)
        assert blob.is_file(), blob
        assert sha256_digest(blob.read_bytes()) == digest


def test_busybox_build_is_reproducible(test_images: dict[str, TestImage], tmp_path: Path) -> None:
    # A second build in another directory, at another time, gives the digest that was pushed.
    layout = build_busybox_layout(tmp_path, "linux/amd64")
    assert layout_manifest_digest(layout) == test_images["busybox"].platform_digests["linux/amd64"]


def test_skopeo_inspects_each_image(registry: Registry, test_images: dict[str, TestImage]) -> None:
    for image in test_images.values():
        inspected = skopeo_inspect(registry, image)
        assert inspected["Digest"] == image.index_digest
        assert inspected["Architecture"] == "amd64"
        assert inspected["Os"] == "linux"
        assert tuple(inspected["Layers"]) == image.layer_digests
    arm64 = skopeo_inspect(registry, test_images["busybox"], "--override-arch", "arm64")
    assert arm64["Architecture"] == "arm64"


def test_containerd_imports_an_oci_archive_and_runs_it(
    registry: Registry, test_images: dict[str, TestImage], containerd: Containerd, tmp_path: Path
) -> None:
    name = "example.org/meshseed-test/busybox:1"
    archive = write_oci_archive(registry, test_images["busybox"], tmp_path / "busybox.tar", name)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        assert {(m.mtime, m.uid, m.gid) for m in members} == {(0, 0, 0)}
        index_file = tar.extractfile("index.json")
        assert index_file is not None
        index = json.load(index_file)
    assert index["manifests"][0]["digest"] == test_images["busybox"].index_digest
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == name
    # The archive is the same bytes every time it is written.
    again = write_oci_archive(registry, test_images["busybox"], tmp_path / "again.tar", name)
    assert archive.read_bytes() == again.read_bytes()

    # Through stdin, as `zstd -dc bundle.tar.zst | ctr images import -` feeds it.
    containerd.ctr("images", "import", "-", input=archive.read_bytes())
    listed = containerd.ctr("images", "ls").stdout.decode()
    assert name in listed
    assert test_images["busybox"].index_digest in listed
    result = containerd.run(name, "/bin/sh", "-c", "echo hello from busybox")
    assert result.stdout == b"hello from busybox\n"


def test_containerd_imports_a_docker_archive_and_runs_it(
    registry: Registry, test_images: dict[str, TestImage], containerd: Containerd, tmp_path: Path
) -> None:
    skopeo = require("skopeo", "skopeo")
    name = "example.org/meshseed-test/hello:1"
    archive = tmp_path / "hello-docker.tar"
    source = f"docker://{test_images['hello'].reference(registry)}"
    run([skopeo, "copy", "--quiet", "--src-tls-verify=false", source, f"docker-archive:{archive}:{name}"])
    containerd.ctr("images", "import", str(archive))
    assert name in containerd.ctr("images", "ls", "-q").stdout.decode().split()
    result = containerd.run(name, "cat", "/hello.txt")
    assert result.stdout == oci_fixtures.HELLO_TEXT


def test_containerd_pulls_from_the_registry(
    registry: Registry, test_images: dict[str, TestImage], containerd: Containerd
) -> None:
    busybox, hello = test_images["busybox"], test_images["hello"]
    for image in (busybox, hello):
        containerd.ctr("images", "pull", "--plain-http", image.reference(registry))
    listed = containerd.ctr("images", "ls").stdout.decode()
    assert busybox.index_digest in listed
    assert hello.index_digest in listed
    # The shared layer is one entry in containerd's content store.
    content = containerd.ctr("content", "ls", "-q").stdout.decode().split()
    assert content.count(busybox.layer_digests[0]) == 1
    result = containerd.run(hello.reference(registry), "/bin/sh", "-c", "cat /hello.txt; echo pulled")
    assert result.stdout == oci_fixtures.HELLO_TEXT + b"pulled\n"


def test_push_image_with_random_layer(
    registry: Registry, test_images: dict[str, TestImage], tmp_path: Path
) -> None:
    image = push_image_with_random_layer(registry, tmp_path, "meshseed-test/random", size_mb=2)
    assert image.media_type == OCI_MANIFEST
    assert image.platform_digests == {"linux/amd64": image.index_digest}
    assert len(image.layer_digests) == 2
    assert image.layer_digests[0] == test_images["busybox"].layer_digests[0]
    random_blob = registry.blob_path(image.layer_digests[1])
    # Random bytes do not compress: the gzipped layer is at least its 2 MiB of content.
    assert random_blob.stat().st_size >= 2 << 20
    assert list(tmp_path.iterdir()) == []  # the build directory is removed after the push
    # A second push gets new random bytes, hence a new layer.
    again = push_image_with_random_layer(registry, tmp_path, "meshseed-test/random", size_mb=1)
    assert again.layer_digests[1] != image.layer_digests[1]
    assert again.layer_digests[0] == image.layer_digests[0]
