"""The example site built once per module, and its nodes as real sshd instances on
127.0.0.1 with recording stand-ins for k3s and systemctl (tests/fake_cluster.py)."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.apply.desired import K3S_BINARY, node_wants
from builder.lock import LockedFile, write_lock
from builder.site import load_site
from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY
from tests.fake_cluster import FakeCluster, fake_cluster
from tests.integration.cli import meshseed
from tests.pinned import write_test_lock

NODES = ("edx1", "edx2", "edx3", "vault")
# upstream.yaml's k3s, which the test lock pins.
PINNED = "v1.33.4+k3s1"


def fake_k3s_binary(version: str) -> bytes:
    """A k3s that knows its version and nothing else: what `apply` asks a node's binary."""
    return f"#!/bin/sh\necho 'k3s version {version} (0123abcd)'\necho 'go version go1.24.6'\n".encode()


@dataclass(frozen=True)
class Built:
    root: Path  # the site folder: site.yaml, images.lock, dist/
    key: Path

    @property
    def dist(self) -> Path:
        return self.root / "dist"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("site")
    (root / "site.yaml").write_text(EXAMPLE_SITE.read_text())
    lock = write_test_lock(root)
    # The pinned k3s is the stand-in binary, so that the seeds pin its sha256.
    binary = fake_k3s_binary(PINNED)
    k3s = LockedFile(lock.binaries["k3s"].url, hashlib.sha256(binary).hexdigest(), len(binary))
    write_lock(dataclasses.replace(lock, binaries={**lock.binaries, "k3s": k3s}), root / "images.lock")
    key = root / "keys" / "master.key"
    key.parent.mkdir(mode=0o700)
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    result = meshseed("build", "site.yaml", cwd=root, master_key=key)
    assert result.returncode == 0, result.stderr
    # As an --airgap build leaves it: the pinned binary in dist/airgap/binaries, listed in
    # SHA256SUMS (the test lock's registries cannot be reached for a real one).
    binaries = root / "dist" / "airgap" / "binaries"
    binaries.mkdir(parents=True)
    (binaries / "k3s").write_bytes(binary)
    with (root / "dist" / "SHA256SUMS").open("a") as sums:
        sums.write(f"{k3s.sha256}  airgap/binaries/k3s\n")
    return Built(root, key)


@pytest.fixture(scope="module")
def module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeCluster]:
    with fake_cluster(tmp_path_factory.mktemp("nodes"), NODES) as cluster:
        yield cluster


@pytest.fixture
def cluster(module_cluster: FakeCluster, built: Built) -> FakeCluster:
    """Every node as its seed left it, k3s running the pinned version, every Node Ready."""
    module_cluster.reset()
    site = load_site(built.root / "site.yaml")
    for node in site.nodes:
        wants = node_wants(node, built.dist)
        for wanted in (*wants.files, *wants.manifests):
            path = module_cluster.root(node.name) / wanted.path.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            if wanted.source is not None:
                shutil.copyfile(wanted.source, path)
            else:
                assert wanted.data is not None
                path.write_bytes(wanted.data)
            path.chmod(wanted.mode)
        module_cluster.add_node(node.name)
    assert (module_cluster.root("edx1") / K3S_BINARY.lstrip("/")).exists()
    return module_cluster
