"""Where everything is on a node's disk: a GUID partition table, the EFI system partition,
a slot for the node's seed, and the root file system last, so that it can grow.

   | GPT | ESP (systemd-boot, kernel, initrd) | seed slot (cidata) | root (ext4) | GPT copy |

A role's image leaves the slot empty; a node's image is the same bytes with that node's
NoCloud seed in the slot. Everything before the slot is the image's "head", everything
after it its "tail", so a node's image is head + its own slot + tail, each compressed
once as a zstd frame of its own: frames simply concatenate. The root comes after the slot
because cloud-init's growpart can only grow the last partition into the space a larger
disk has behind it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

SECTOR = 512
MIB = 1 << 20
# Partitions start on MiB boundaries; the first MiB holds the protective MBR and the GPT.
ALIGNMENT = MIB
ESP_SIZE = 128 * MIB
# The seed's ISO 9660 image: user-data with the node's files (a server's carries every
# manifest), far below this.
SEED_SLOT_SIZE = 32 * MIB
# The backup GPT takes the last 33 sectors; a MiB keeps the disk's size aligned too.
TAIL_RESERVE = MIB

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
# Linux data for the seed (cloud-init finds it by its file system label, cidata).
SEED_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
# "Linux root (x86-64)" of the Discoverable Partitions Specification.
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
_NAMESPACE = uuid.UUID("6d657368-7365-6564-2064-69736b000000")


def disk_uuid(role: str, purpose: str) -> str:
    """A fixed identifier of a role image's disk, partition or file system: the same in
    every build, so that the image repeats byte for byte."""
    return str(uuid.uuid5(_NAMESPACE, f"{role}/{purpose}"))


def fat_volume_id(role: str) -> str:
    return uuid.uuid5(_NAMESPACE, f"{role}/esp-volume").hex[:8]


def _align(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


@dataclass(frozen=True)
class Layout:
    role: str
    root_size: int

    @property
    def esp_start(self) -> int:
        return ALIGNMENT

    @property
    def seed_start(self) -> int:
        return self.esp_start + ESP_SIZE

    @property
    def root_start(self) -> int:
        return self.seed_start + SEED_SLOT_SIZE

    @property
    def size(self) -> int:
        return self.root_start + _align(self.root_size) + TAIL_RESERVE

    def uuid(self, purpose: str) -> str:
        return disk_uuid(self.role, purpose)

    def sfdisk_script(self) -> str:
        def partition(start: int, size: int, kind: str, purpose: str, name: str) -> str:
            return (
                f"start={start // SECTOR}, size={size // SECTOR}, type={kind}, "
                f'uuid={self.uuid(purpose)}, name="{name}"\n'
            )

        return (
            "label: gpt\n"
            f"label-id: {self.uuid('disk')}\n"
            "unit: sectors\n"
            f"first-lba: {ALIGNMENT // SECTOR}\n"
            f"last-lba: {(self.size - TAIL_RESERVE) // SECTOR - 1}\n"
            "\n"
            + partition(self.esp_start, ESP_SIZE, ESP_TYPE, "esp", "esp")
            + partition(self.seed_start, SEED_SLOT_SIZE, SEED_TYPE, "seed", "seed")
            + partition(self.root_start, _align(self.root_size), ROOT_TYPE, "root", "root")
        )
