"""What `--disks` plans: one root file system, an image per role, and per node only a
seed frame and a join recipe, so that a node's change rebuilds nothing of the others."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from builder.lock.disk_spec import DISK_SPEC, LOCK_NAME
from builder.lock.file import read_lock, write_lock
from tests.conftest import EXAMPLE_SITE, REPO
from tests.integration.cli import meshseed
from tests.integration.generated import write_key
from tests.pinned import write_test_lock

ADMIN2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEUwlTGCnjoG0VkNgHyu0kwtelXKRY3hxcg7shRbNn/y admin2@example.org"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The example site with test pins and the committed pins of the nodes' packages."""
    (tmp_path / "site.yaml").write_text(EXAMPLE_SITE.read_text())
    lock = write_test_lock(tmp_path)
    debian = {LOCK_NAME: read_lock(REPO / "images.lock").debian[LOCK_NAME]}
    write_lock(dataclasses.replace(lock, debian=debian), tmp_path / "images.lock")
    (tmp_path / DISK_SPEC).parent.mkdir()
    shutil.copyfile(REPO / DISK_SPEC, tmp_path / DISK_SPEC)
    write_key(tmp_path)
    return tmp_path


def planned(root: Path) -> dict[str, str]:
    result = meshseed("plan", "--disks", "--json", cwd=root, master_key=root / "master.key")
    assert result.returncode == 0, result.stderr
    return {entry["name"]: entry["key"] for entry in json.loads(result.stdout)}


def test_disks_plan_one_rootfs_an_image_per_role_and_a_seed_frame_per_node(root: Path) -> None:
    names = set(planned(root))
    assert {"disk-rootfs", "disk-role-server", "disk-role-backup", "disk-server", "disk-backup"} <= names
    for node in ("edx1", "edx2", "edx3", "vault"):
        assert {f"disk-seed-{node}", f"disk-node-{node}", f"seed-{node}"} <= names
    assert "disk-role-agent" not in names  # the example site has no agent


def test_a_changed_ssh_key_rebuilds_that_nodes_seed_frame_only(root: Path) -> None:
    before = planned(root)
    site = root / "site.yaml"
    text = site.read_text()
    edx1 = text.index("  - name: edx1")
    keys = text.index("ssh_authorized_keys:\n", edx1) + len("ssh_authorized_keys:\n")
    site.write_text(text[:keys] + f"      - {ADMIN2}\n" + text[keys:])
    after = planned(root)
    changed = sorted(name for name in before if before[name] != after.get(name))
    assert changed == ["disk-node-edx1", "disk-seed-edx1", "seed-edx1"], changed


def test_disks_without_the_nodes_package_pins_is_refused_naming_them(root: Path) -> None:
    lock = read_lock(root / "images.lock")
    write_lock(dataclasses.replace(lock, debian={}), root / "images.lock")
    result = meshseed("plan", "--disks", cwd=root, master_key=root / "master.key")
    assert result.returncode == 1, result.stderr  # a stale lock, as for our images
    assert f"debian.{LOCK_NAME}: is missing" in result.stderr and "Traceback" not in result.stderr, (
        result.stderr
    )
