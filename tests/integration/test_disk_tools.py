"""The disk image's file systems and partition table, made by the real tools through
their wrappers: the same bytes whatever the clock, umask or source files' times, and
what the tools' own readers (sfdisk, dumpe2fs, debugfs, mtools) find in them."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from builder.disk.layout import ESP_SIZE, SEED_SLOT_SIZE, Layout, disk_uuid
from builder.disk.role import unpack_rootfs
from builder.tools import e2fs, fat, sfdisk
from tests.tools import require

EPOCH = 1700000000


def rootfs_tar(path: Path, stamp: int) -> Path:
    """A small root file system as the rootfs derivation hands it over: a tarball."""
    members: list[tuple[str, bytes | str | None, int]] = [
        ("etc", None, 0o755),
        ("etc/hostname", b"node\n", 0o644),
        ("usr", None, 0o755),
        ("usr/bin", None, 0o755),
        ("usr/bin/tool", b"#!/bin/sh\n", 0o755),
        ("usr/bin/link", "tool", 0o777),
    ]
    with tarfile.open(path, "w") as tar:
        for name, content, mode in members:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = mode, stamp
            if content is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return path


def make_ext4(work: Path, stamp: int) -> bytes:
    """Unpacked as the role image's build unpacks it, then made into ext4."""
    work.mkdir()
    image = work / "root.img"
    root = work / "tree"
    unpack_rootfs(rootfs_tar(work / "rootfs.tar", stamp), root)
    root.chmod(0o755)
    os.utime(root, (stamp, stamp))
    e2fs.make_ext4(
        image,
        root,
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
    time.sleep(1.1)  # a later clock: the unpacked files' ctimes, and the links' own times
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
