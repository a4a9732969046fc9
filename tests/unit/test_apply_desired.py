"""What `meshseed apply` takes from dist/ for a node, and which k3s steps it allows."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import yaml

from builder.apply.desired import IMAGES_DIR, K3S_BINARY, MYCELIUM_BINARY, node_wants
from builder.apply.versions import K3sVersion, check_step, parse_version
from builder.errors import ExitStatus, MeshseedError
from builder.site import load_site
from tests.conftest import EXAMPLE_SITE

K3S = hashlib.sha256(b"k3s").hexdigest()
BUNDLE = hashlib.sha256(b"bundle").hexdigest()
OURS = hashlib.sha256(b"ours").hexdigest()


def fake_dist(root: Path, node: str) -> Path:
    """dist/ as an --airgap build with our images leaves it, cut down to one seed."""
    dist = root / "dist"
    setup = (
        "#!/bin/sh\n"
        f"get k3s https://example.org/v1.33.4+k3s1/k3s {K3S}\n"
        f"get images.tar.zst payload {BUNDLE}\n"
        f"place own-images.tar payload {OURS}\n"
    )
    user_data = {
        "write_files": [
            {"path": "/etc/ssh/sshd_config.d/50-meshseed.conf", "permissions": "0644", "content": "x\n"},
            {"path": "/usr/local/lib/meshseed/node-setup", "permissions": "0700", "content": setup},
            {"path": "/etc/rancher/k3s/config.yaml", "permissions": "0600", "content": "token: t\n"},
            {
                "path": "/etc/mycelium/priv_key.bin",
                "permissions": "0600",
                "encoding": "b64",
                "content": base64.b64encode(b"\x01\x02").decode(),
            },
            {
                "path": "/var/lib/meshseed/manifests/a-secrets.yaml",
                "permissions": "0600",
                "encoding": "gz+b64",
                "content": base64.b64encode(gzip.compress(b"kind: Secret\n")).decode(),
            },
        ]
    }
    (dist / "nodes" / node).mkdir(parents=True)
    (dist / "nodes" / node / "user-data").write_text("#cloud-config\n" + yaml.safe_dump(user_data))
    for name, data in {
        "airgap/server.tar.zst": b"bundle",
        "airgap/binaries/k3s": b"k3s",
        "own-images/own-images.tar": b"ours",
        "manifests/a-secrets.yaml": b"kind: Secret\n",
        "manifests/b.yaml": b"kind: ConfigMap\n",
    }.items():
        (dist / name).parent.mkdir(parents=True, exist_ok=True)
        (dist / name).write_bytes(data)
    (dist / "SHA256SUMS").write_text(
        f"{BUNDLE}  airgap/server.tar.zst\n{K3S}  airgap/binaries/k3s\n{OURS}  own-images/own-images.tar\n"
    )
    return dist


def test_a_server_wants_its_seed_files_k3s_its_images_and_the_manifests(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    server = site.servers[0]
    dist = fake_dist(tmp_path, server.name)
    wants = node_wants(server, dist)
    files = {want.path: want for want in wants.files}
    # sshd's drop-in is the same on every site and only matters at boot: left alone.
    assert set(files) == {
        "/usr/local/lib/meshseed/node-setup",
        "/etc/rancher/k3s/config.yaml",
        "/etc/mycelium/priv_key.bin",
        "/var/lib/meshseed/manifests/a-secrets.yaml",
        K3S_BINARY,
        f"{IMAGES_DIR}/images.tar.zst",
        f"{IMAGES_DIR}/own-images.tar",
    }
    assert files["/etc/rancher/k3s/config.yaml"].restarts == ("k3s.service",)
    assert files["/etc/rancher/k3s/config.yaml"].mode == 0o600
    assert files["/etc/mycelium/priv_key.bin"].data == b"\x01\x02"
    assert files["/var/lib/meshseed/manifests/a-secrets.yaml"].data == b"kind: Secret\n"
    assert files["/var/lib/meshseed/manifests/a-secrets.yaml"].restarts == ()
    assert files[K3S_BINARY].source == dist / "airgap" / "binaries" / "k3s"
    assert files[K3S_BINARY].mode == 0o755 and files[K3S_BINARY].sha256 == K3S
    assert files[f"{IMAGES_DIR}/images.tar.zst"].source == dist / "airgap" / "server.tar.zst"
    assert files[f"{IMAGES_DIR}/own-images.tar"].source == dist / "own-images" / "own-images.tar"
    assert [(want.path.rsplit("/", 1)[1], want.mode) for want in wants.manifests] == [
        ("a-secrets.yaml", 0o600),
        ("b.yaml", 0o644),
    ]


def with_mycelium_archive(dist: Path, node: str, members: dict[str, bytes]) -> str:
    """An --airgap build's Mycelium archive in dist/ and the pin of it in the seed; its sha256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    digest = hashlib.sha256(archive).hexdigest()
    # Named as an --airgap build names it: after the lock's entry, not the archive.
    (dist / "airgap" / "binaries" / "mycelium").write_bytes(archive)
    with (dist / "SHA256SUMS").open("a") as sums:
        sums.write(f"{digest}  airgap/binaries/mycelium\n")
    user_data = dist / "nodes" / node / "user-data"
    document = yaml.safe_load(user_data.read_text())
    for entry in document["write_files"]:
        if entry["path"] == "/usr/local/lib/meshseed/node-setup":
            entry["content"] += f"get mycelium.tar.gz https://example.org/mycelium.tar.gz {digest}\n"
    user_data.write_text("#cloud-config\n" + yaml.safe_dump(document))
    return digest


def test_the_mycelium_binary_is_the_one_in_the_pinned_archive_and_restarts_mycelium(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    server = site.servers[0]
    dist = fake_dist(tmp_path, server.name)
    # Without the archive in dist/ (a build without --airgap) there is nothing to compare.
    assert MYCELIUM_BINARY not in {want.path for want in node_wants(server, dist).files}
    with_mycelium_archive(dist, server.name, {"LICENSE": b"text", "mycelium": b"mycelium v0.6"})
    files = {want.path: want for want in node_wants(server, dist).files}
    binary = files[MYCELIUM_BINARY]
    assert binary.sha256 == hashlib.sha256(b"mycelium v0.6").hexdigest() and binary.data == b"mycelium v0.6"
    assert binary.mode == 0o755 and binary.restarts == ("mycelium.service",)


def test_a_mycelium_archive_without_the_binary_is_an_error_naming_it(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    server = site.servers[0]
    dist = fake_dist(tmp_path, server.name)
    with_mycelium_archive(dist, server.name, {"README": b"no binary here"})
    with pytest.raises(MeshseedError, match=r"binaries/mycelium: no readable mycelium binary"):
        node_wants(server, dist)


def test_an_agent_wants_no_manifests_and_restarts_k3s_agent(tmp_path: Path) -> None:
    site = load_site(EXAMPLE_SITE)
    vault = next(node for node in site.nodes if node.name == "vault")
    wants = node_wants(vault, fake_dist(tmp_path, vault.name))
    assert wants.manifests == () and wants.unit == "k3s-agent.service"
    assert {want.path: want.restarts for want in wants.files}[K3S_BINARY] == ("k3s-agent.service",)


def test_versions_are_read_from_k3s_and_compared_by_number() -> None:
    assert parse_version("k3s version v1.33.10+k3s2 (abc)\ngo version go1.24", "x") == K3sVersion(
        1, 33, 10, 2
    )
    assert parse_version("v1.33.10+k3s1", "x") > parse_version("v1.33.9+k3s3", "x")
    with pytest.raises(MeshseedError, match="no k3s version"):
        parse_version("k3s: command not found", "edx1")


@pytest.mark.parametrize(
    ("running", "pinned", "refused"),
    [
        ("v1.32.8+k3s1", "v1.33.4+k3s1", None),
        ("v1.33.4+k3s1", "v1.33.4+k3s2", None),
        ("v1.33.4+k3s2", "v1.33.4+k3s1", "refusing to downgrade"),
        ("v1.34.0+k3s1", "v1.33.4+k3s1", "refusing to downgrade"),
        ("v1.31.9+k3s1", "v1.33.4+k3s1", "skips a minor version"),
        ("v1.33.4+k3s1", "v2.0.0+k3s1", "skips a minor version"),
    ],
)
def test_a_downgrade_and_a_skipped_minor_version_are_refused_as_bad_input(
    running: str, pinned: str, refused: str | None
) -> None:
    if refused is None:
        check_step("edx1", parse_version(running, "x"), parse_version(pinned, "x"))
        return
    with pytest.raises(MeshseedError, match=refused) as error:
        check_step("edx1", parse_version(running, "x"), parse_version(pinned, "x"))
    assert error.value.status is ExitStatus.BAD_INPUT
