"""Disk images booted for real: a node's flashed disk under UEFI (OVMF), QEMU TCG.

The test site is built with `meshseed build --disks --images`: its lock pins the k3s and
Mycelium test doubles (tests/e2e/doubles.py) from local servers and our backup image's
stand-in from the local Debian test archive; the nodes' Debian packages are the
committed images.lock's, fetched from deb.debian.org by sha256 (like the e2e guest's).
The server s1 boots its dist/nodes/s1/disk.raw.zst, written onto a larger disk, with no
network beyond its own NIC: everything it installs comes from the image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.lock.disk_spec import DISK_SPEC, LOCK_NAME
from builder.lock.file import read_lock, write_lock
from tests.conftest import REPO, TEST_MASTER_KEY
from tests.e2e.project import SITE, artifacts_of, build, build_project, e2e_store, mirror_options
from tests.e2e.uefi import DiskGuest, debugfs, decompress, exists, partitions, read
from tests.integration.cli import meshseed
from tests.integration.debian_fixtures import DebRepo, serve_directory
from tests.integration.generated import named, write_backup_image
from tests.integration.oci_fixtures import Registry, TestImage

pytestmark = pytest.mark.e2e

IMAGES = "/var/lib/rancher/k3s/agent/images"
# Room the flashed machine's disk has beyond the image, for growpart to give the root.
EXTRA = 1 << 30


def pin_the_nodes_packages(root: Path) -> None:
    """The project's disk description and its closure, as the repository pins them."""
    (root / DISK_SPEC).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO / DISK_SPEC, root / DISK_SPEC)
    committed = read_lock(REPO / "images.lock")
    lock = read_lock(root / "images.lock")
    debian = {**lock.debian, LOCK_NAME: committed.debian[LOCK_NAME]}
    write_lock(dataclasses.replace(lock, debian=debian), root / "images.lock")


@pytest.fixture(scope="module")
def project(
    tmp_path_factory: pytest.TempPathFactory,
    registry: Registry,
    test_images: dict[str, TestImage],
    deb_repo: DebRepo,
) -> tuple[Path, Path]:
    """The site's root and its --disks build's dist/."""
    base = tmp_path_factory.mktemp("disks")
    key = base / "keys" / "master.key"
    key.parent.mkdir(mode=0o700)
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    # The disks' root file system takes minutes: the e2e guest's store keeps it between runs.
    store = e2e_store()
    dist = build_project(
        base / "project",
        site=SITE,
        master_key=key,
        registry=registry,
        test_images=test_images,
        build_args=("--airgap", "--store", str(store)),
        rebuild_args=("--disks", "--images", "--store", str(store)),
        before_lock=lambda root: write_backup_image(root, deb_repo),
        before_build=pin_the_nodes_packages,
    )
    return base / "project", dist


def test_the_server_boots_its_flashed_disk_into_mycelium_and_k3s(
    project: tuple[Path, Path], tmp_path: Path
) -> None:
    root, dist = project
    disk = decompress(dist / "nodes" / "s1" / "disk.raw.zst", tmp_path / "s1.raw")
    before = partitions(disk)["root"]
    with disk.open("r+b") as stream:
        stream.truncate(disk.stat().st_size + EXTRA)
    vm = DiskGuest("s1", tmp_path, disk, mac="52:54:00:00:0e:01")
    try:
        vm.start()
        vm.wait_for(r"meshseed: k3s server started", r"Cloud-init v\. \S+ finished at")
        vm.power_down()
    finally:
        vm.stop()
    console = vm.console()
    # cloud-init found the seed in the disk's cidata partition and finished without errors.
    assert json.loads(read(disk, "/var/lib/cloud/data/result.json"))["v1"]["errors"] == []
    assert "meshseed: verified k3s (" in console, console[-3000:]
    assert "ERROR" not in console.split("meshseed: verified", 1)[1]
    # Nothing downloaded (its NIC leads nowhere): every pinned file came from the image's
    # own payload.
    setup_log = read(disk, "/var/log/meshseed-setup.log").decode()
    assert "download" not in setup_log and "payload disk" not in setup_log, setup_log
    # In order: the host firewall loaded (Mycelium's unit requires it), Mycelium, then
    # k3s's install script and k3s.
    firewall = re.search(r"Finished .{0,20}meshseed-firewall", console)
    mycelium = re.search(r"Started .{0,20}mycelium\.service", console)
    assert firewall and mycelium and firewall.start() < mycelium.start(), console[-3000:]
    mycelium_started = float(read(disk, "/var/lib/mycelium/order.log").decode().split()[1])
    k3s_log = read(disk, "/var/lib/meshseed-test/order.log").decode().splitlines()
    install_started, k3s_started = float(k3s_log[0].split()[1]), float(k3s_log[1].split()[1])
    assert mycelium_started < install_started < k3s_started, k3s_log
    assert "cluster-init: true" in read(disk, "/var/lib/meshseed-test/k3s-config.yaml").decode()
    # The derived host key, and none generated beside it.
    known = meshseed("known-hosts", cwd=root, master_key=root.parent / "keys" / "master.key")
    host_keys = {line.split()[-1]: line.split()[1:3] for line in known.stdout.splitlines()}
    assert read(disk, "/etc/ssh/ssh_host_ed25519_key.pub").decode().split()[:2] == host_keys["s1"]
    assert not exists(disk, "/etc/ssh/ssh_host_rsa_key")
    # k3s's import directory holds the role's bundle, byte for byte the build's.
    (bundle,) = (dist / "airgap").glob("*server*")
    assert hashlib.sha256(read(disk, f"{IMAGES}/images.tar.zst")).hexdigest() == file_sha256(bundle)
    # growpart and resize2fs gave the root the disk's new room.
    after = partitions(disk)["root"]
    assert after["start"] == before["start"] and after["size"] >= before["size"] + EXTRA - (2 << 20)
    blocks = debugfs(disk, "stats").stdout.decode()
    count = int(next(line for line in blocks.splitlines() if line.startswith("Block count:")).split()[-1])
    assert count * 4096 > before["size"] + EXTRA // 2


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_backup_role_image_holds_the_image_its_cronjobs_run(
    project: tuple[Path, Path], tmp_path: Path
) -> None:
    _, dist = project
    disk = decompress(dist / "disks" / "backup.raw.zst", tmp_path / "backup.raw")
    archive = read(disk, f"{IMAGES}/backup-own.tar")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        digests = {manifest["digest"] for manifest in json.load(member)["manifests"]}
    docs = [doc for doc in yaml.safe_load_all((dist / "manifests" / "backup.yaml").read_text()) if doc]
    for name in ("backup-couchdb", "backup-rotate"):
        cronjob = named(docs, "CronJob", name)
        (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        image = container["image"]
        assert image.startswith("meshseed.local/backup@sha256:") and image.split("@")[1] in digests, image
        assert container["imagePullPolicy"] == "Never"


def test_a_node_image_is_its_role_image_with_its_seed_in_the_slot(
    project: tuple[Path, Path], tmp_path: Path
) -> None:
    _, dist = project
    role = decompress(dist / "disks" / "server.raw.zst", tmp_path / "server.raw").read_bytes()
    node = decompress(dist / "nodes" / "s2" / "disk.raw.zst", tmp_path / "s2.raw").read_bytes()
    seed = partitions(tmp_path / "s2.raw")["seed"]
    start, end = seed["start"], seed["start"] + seed["size"]
    assert len(role) == len(node)
    assert role[:start] == node[:start] and role[end:] == node[end:]
    iso = (dist / "nodes" / "s2" / "seed.iso").read_bytes()
    assert node[start : start + len(iso)] == iso and not any(role[start:end])
    assert (dist / "nodes" / "s2" / "disk.raw.zst").stat().st_mode & 0o777 == 0o600


@pytest.mark.disk_repro
def test_disk_images_repeat_byte_for_byte(
    project: tuple[Path, Path], tmp_path: Path, registry: Registry
) -> None:
    """A second build from an empty store, elsewhere, under another time zone, locale,
    umask, host name and wall clock, makes the same role and node images."""
    root, dist = project
    elsewhere = tmp_path / "elsewhere" / "deeper"
    elsewhere.mkdir(parents=True)
    for name in ("site.yaml", "upstream.yaml", "images.lock"):
        shutil.copyfile(root / name, elsewhere / name)
    for folder in ("images", "disks"):
        shutil.copytree(root / folder, elsewhere / folder)
    key = root.parent / "keys" / "master.key"
    store = str(tmp_path / "store")
    env = {"TZ": "Pacific/Chatham", "LANG": "tr_TR.UTF-8", "LC_ALL": "tr_TR.UTF-8", "PYTHONHASHSEED": "4242"}
    varied: dict[str, Any] = {"env": env, "preexec_fn": lambda: os.umask(0o077) and None}
    if shutil.which("unshare") and os.geteuid() == 0:
        varied["wrapper"] = ("unshare", "--uts", "sh", "-c", 'hostname repro-elsewhere && exec "$@"', "sh")
    with serve_directory(artifacts_of(root)) as artifact_url:
        build(elsewhere, key, "--airgap", "--store", store, *mirror_options(registry, artifact_url), **varied)
    build(elsewhere, key, "--disks", "--images", "--store", store, "--upstream", "upstream.yaml", **varied)
    images = sorted(
        path.relative_to(dist).as_posix()
        for path in [*dist.glob("disks/*.raw.zst"), *dist.glob("nodes/*/disk.raw.zst")]
    )
    assert len(images) == 2 + 4, images
    for name in images:
        assert file_sha256(elsewhere / "dist" / name) == file_sha256(dist / name), name
