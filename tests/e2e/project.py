"""A test site built the way the e2e guests boot it: its lock resolved against a local
registry and a local artifact server that serves the k3s and Mycelium test doubles."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO
from tests.e2e.doubles import INSTALL, K3S, mycelium_archive
from tests.integration.cli import meshseed
from tests.integration.debian_fixtures import serve_directory
from tests.integration.oci_fixtures import Registry, TestImage
from tests.integration.upstream_text import (
    IMAGES_LIST,
    IMAGES_LIST_PATH,
    INSTALL_PATH,
    K3S_PATH,
    MYCELIUM_PATH,
    REGISTRY,
    cluster_image_tags,
    upstream_yaml,
)
from tests.unit.sites import KEY

# Three servers and the backup node, each with a MAC its seed configures its link by.
SITE = """\
cluster: e2e
domain: e2e.example.org
lms_host: lms.e2e.example.org
studio_host: studio.e2e.example.org
nodes:
""" + "".join(
    f"""\
  - name: {name}
    role: {role}
    public_ipv6: 2001:db8:e2e::{index}/64
    gateway: 2001:db8:e2e::ff
    mac: "52:54:00:00:0e:0{index}"
    ssh_authorized_keys: [{KEY}]
"""
    for index, (name, role) in enumerate(
        [("s1", "server"), ("s2", "server"), ("s3", "server"), ("b1", "backup")], start=1
    )
)


UPSTREAM = upstream_yaml("[linux/amd64]", cluster_images=True)


def tag_image(registry: Registry, image: TestImage, tag: str) -> None:
    """Give the registry's `image` a second tag, as a push of the same manifest would."""
    url = f"{registry.url}/v2/{image.repository}/manifests"
    manifest = httpx.get(f"{url}/{image.tag}", headers={"Accept": image.media_type}, timeout=30)
    manifest.raise_for_status()
    httpx.put(
        f"{url}/{tag}", content=manifest.content, headers={"Content-Type": image.media_type}, timeout=30
    ).raise_for_status()


def e2e_store() -> Path:
    """The store the e2e session keeps between runs (the guest disk, the disks' rootfs)."""
    return Path(os.environ.get("MESHSEED_E2E_STORE", REPO / ".meshseed" / "e2e-store"))


def artifacts_of(root: Path) -> Path:
    """Where the artifact server's files for the project in `root` are."""
    return root.parent / f"{root.name}-artifacts"


def mirror_options(registry: Registry, artifact_url: str) -> list[str]:
    return [
        "--upstream",
        "upstream.yaml",
        "--mirror",
        f"{REGISTRY}={registry.url}",
        "--artifact-mirror",
        artifact_url,
    ]


def build_project(
    root: Path,
    *,
    site: str,
    master_key: Path,
    registry: Registry,
    test_images: dict[str, TestImage],
    build_args: tuple[str, ...] = ("--airgap",),
    before_lock: Callable[[Path], None] | None = None,
    before_build: Callable[[Path], None] | None = None,
    rebuild_args: tuple[str, ...] | None = None,
) -> Path:
    """Lock and build `site` in `root` (created); `before_lock(root)` and
    `before_build(root)` run before each. With `rebuild_args`, build again so, with no
    artifact mirror: what the first build fetched is in the store by then, and the rest
    (Debian packages) comes from its own archive. The build's dist/."""
    root.mkdir()
    if before_lock is not None:
        before_lock(root)
    for tag in sorted(cluster_image_tags()):
        tag_image(registry, test_images["hello"], tag)
    (root / "site.yaml").write_text(site)
    (root / "upstream.yaml").write_text(UPSTREAM)
    nodes = json.loads(meshseed("nodes", "--json", cwd=root, master_key=master_key).stdout)
    routes = {n["public_ipv6"]: n["overlay_address"] for n in nodes}
    artifacts = artifacts_of(root)
    files = {
        K3S_PATH: K3S.encode(),
        INSTALL_PATH: INSTALL.encode(),
        IMAGES_LIST_PATH: IMAGES_LIST,
        MYCELIUM_PATH: mycelium_archive(routes),
    }
    for relative, data in files.items():
        (artifacts / relative).parent.mkdir(parents=True, exist_ok=True)
        (artifacts / relative).write_bytes(data)
    with serve_directory(artifacts) as artifact_url:
        pins = mirror_options(registry, artifact_url)
        result = meshseed("lock", *pins, cwd=root, master_key=master_key)
        assert result.returncode == 0, result.stderr
        if before_build is not None:
            before_build(root)
        build(root, master_key, *build_args, *pins)
    if rebuild_args is not None:
        build(root, master_key, *rebuild_args, "--upstream", "upstream.yaml")
    return root / "dist"


def build(root: Path, master_key: Path, *args: str, **options: Any) -> None:
    """`meshseed build args` in `root`; disk images take minutes."""
    result = meshseed("build", *args, cwd=root, master_key=master_key, timeout=2400, **options)
    assert result.returncode == 0, result.stderr
