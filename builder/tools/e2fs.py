"""e2fsprogs: an ext4 file system made from a directory (mke2fs -d), with every time pinned.

mke2fs takes the superblock's times, and each inode's creation time, from
E2FSPROGS_FAKE_TIME; but each inode's change and access times it copies from the source
files, and a file's ctime is the moment it was unpacked, which nothing can set. So once
the file system is made, debugfs sets both on every inode in use, which dumpe2fs lists.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from builder.tools.run import run_tool

PACKAGE = "e2fsprogs"
_FREE = re.compile(r"^\s+Free inodes: (.*)$", re.MULTILINE)
_COUNT = re.compile(r"^Inode count:\s+(\d+)$", re.MULTILINE)
# Inode 2 is the root directory; 1 and 3 to 10 are reserved and made by mke2fs itself.
_ROOT_INODE = 2
_FIRST_INODE = 11


def make_ext4(
    image: Path, source: Path, *, size: int, label: str, uuid: str, hash_seed: str, epoch: int
) -> None:
    """`image` (created, `size` bytes) as ext4 holding `source`'s tree, owners and modes."""
    env = {"E2FSPROGS_FAKE_TIME": str(epoch), "LC_ALL": "C"}
    args = ["-q", "-F", "-t", "ext4", "-L", label, "-U", uuid, "-E", f"hash_seed={hash_seed},root_owner=0:0"]
    args += ["-d", str(source), str(image), f"{size // 1024}k"]
    run_tool("mke2fs", args, package=PACKAGE, env=env)
    _pin_inode_times(image, epoch)


def _used_inodes(image: Path) -> list[int]:
    listing = run_tool("dumpe2fs", [str(image)], package=PACKAGE, env={"LC_ALL": "C"})
    count_match = _COUNT.search(listing)
    if count_match is None:
        raise ValueError(f"dumpe2fs of {image} names no inode count")
    free: set[int] = set()
    for ranges in _FREE.findall(listing):
        for part in filter(None, (piece.strip() for piece in ranges.split(","))):
            first, _, last = part.partition("-")
            free.update(range(int(first), int(last or first) + 1))
    return [_ROOT_INODE] + [n for n in range(_FIRST_INODE, int(count_match[1]) + 1) if n not in free]


def _pin_inode_times(image: Path, epoch: int) -> None:
    commands = "".join(
        f"sif <{inode}> {field} @{epoch}\n" for inode in _used_inodes(image) for field in ("ctime", "atime")
    )
    with tempfile.NamedTemporaryFile("w", prefix="meshseed-debugfs-", suffix=".cmd") as script:
        script.write(commands)
        script.flush()
        run_tool(
            "debugfs",
            ["-w", "-f", script.name, str(image)],
            package=PACKAGE,
            env={"E2FSPROGS_FAKE_TIME": str(epoch), "LC_ALL": "C"},
        )
