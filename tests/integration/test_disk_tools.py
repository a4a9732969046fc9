"""The disk image's file systems and partition table, made by the real tools through
their wrappers: the same bytes whatever the clock, umask or source files' times, and
what the tools' own readers (sfdisk, dumpe2fs, debugfs, mtools) find in them."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from builder.disk.layout import ESP_SIZE, SEED_SLOT_SIZE, Layout, disk_uuid
from builder.tools import e2fs, fat, sfdisk
from tests.tools import require

EPOCH = 1700000000


def tree(root: Path, stamp: int) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("node\n")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "usr" / "bin" / "tool").chmod(0o755)
    (root / "usr" / "bin" / "link").symlink_to("tool")
    # Modes as a tarball sets them, whatever the umask.
    for directory in (root, root / "etc", root / "usr", root / "usr" / "bin"):
        directory.chmod(0o755)
    (root / "etc" / "hostname").chmod(0o644)
    for path in [*root.rglob("*"), root]:
        os.utime(path, (stamp, stamp), follow_symlinks=False)
    return root


def make_ext4(work: Path, stamp: int) -> bytes:
    image = work / "root.img"
    e2fs.make_ext4(
        image,
        tree(work / "tree", stamp),
        size=16 << 20,
        label="root",
        uuid=disk_uuid("server", "root-fs"),
        hash_seed=disk_uuid("server", "root-hash-seed"),
        epoch=EPOCH,
    )
    return image.read_bytes()


def test_ext4_repeats_byte_for_byte(tmp_path: Path) -> None:
    require("mke2fs", "e2fsprogs")
    first = make_ext4(tmp_path / "a", EPOCH)
    time.sleep(1.1)  # a later clock: ctimes of the unpacked files differ
    old = os.umask(0o077)
    try:
        second = make_ext4(tmp_path / "b", EPOCH)
    finally:
        os.umask(old)
    assert first == second
    listing = subprocess.run(
        [require("debugfs", "e2fsprogs"), "-R", "stat /usr/bin/tool", str(tmp_path / "a" / "root.img")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Mode:  0755" in listing and f"ctime: 0x{EPOCH:x}" in listing, listing


def test_the_esp_repeats_byte_for_byte_and_holds_the_files(tmp_path: Path) -> None:
    require("mkfs.fat", "dosfstools")
    require("mcopy", "mtools")
    source = tmp_path / "loader.conf"
    source.write_text("default meshseed.conf\n")
    os.utime(source, (EPOCH, EPOCH))
    images = []
    for name in ("a.img", "b.img"):
        fat.make_fat(
            tmp_path / name,
            size=ESP_SIZE,
            label="ESP",
            volume_id="1234abcd",
            epoch=EPOCH,
            files={"loader/loader.conf": source, "EFI/BOOT/BOOTX64.EFI": source},
        )
        images.append((tmp_path / name).read_bytes())
        time.sleep(1.1)
    assert images[0] == images[1]
    listed = subprocess.run(
        [require("mdir", "mtools"), "-b", "-i", str(tmp_path / "a.img"), "::/EFI/BOOT"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout
    assert "BOOTX64.EFI" in listed


def test_the_partition_table_puts_the_root_last_with_fixed_ids(tmp_path: Path) -> None:
    layout = Layout("server", 64 << 20)
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as stream:
        stream.truncate(layout.size)
    sfdisk.write_gpt(disk, layout.sfdisk_script())
    table = json.loads(
        subprocess.run(
            [require("sfdisk", "fdisk"), "--json", str(disk)], capture_output=True, check=True
        ).stdout
    )["partitiontable"]
    parts = {p["name"]: p for p in table["partitions"]}
    assert [p["name"] for p in table["partitions"]] == ["esp", "seed", "root"]
    assert parts["esp"]["start"] * 512 == layout.esp_start and parts["esp"]["size"] * 512 == ESP_SIZE
    assert parts["seed"]["start"] * 512 == layout.seed_start and parts["seed"]["size"] * 512 == SEED_SLOT_SIZE
    assert parts["root"]["start"] * 512 == layout.root_start
    assert parts["root"]["uuid"].lower() == layout.uuid("root")
    assert table["id"].lower() == layout.uuid("disk")
    # Growing the root needs nothing after it but the backup GPT.
    assert (parts["root"]["start"] + parts["root"]["size"]) * 512 <= layout.size - 33 * 512


@pytest.mark.parametrize("role", ["server", "agent", "backup"])
def test_each_role_has_its_own_fixed_ids(role: str) -> None:
    assert Layout(role, 1).uuid("root") == disk_uuid(role, "root") != disk_uuid("other", "root")
