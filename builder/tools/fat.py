"""dosfstools and mtools: a FAT file system (the EFI system partition) filled without mounting.

mkfs.fat --invariant fixes what it would otherwise take from the clock or chance, and
mtools writes each file with the modification time it has on disk (-m); directories and
the files' creation times come from the clock, which SOURCE_DATE_EPOCH pins for mtools.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from builder.tools.run import run_tool

PACKAGES = ("dosfstools", "mtools")


def make_fat(
    image: Path, *, size: int, label: str, volume_id: str, epoch: int, files: Mapping[str, Path]
) -> None:
    """`image` (created, `size` bytes, FAT32) holding `files` (path in the image -> source)."""
    args = ["-C", "-F", "32", "--invariant", "-i", volume_id, "-n", label, str(image), str(size // 1024)]
    run_tool("mkfs.fat", args, package="dosfstools")
    env = {"SOURCE_DATE_EPOCH": str(epoch), "MTOOLS_SKIP_CHECK": "1", "TZ": "UTC"}
    directories = sorted(
        {str(parent) for name in files for parent in PurePosixPath(name).parents if str(parent) != "."}
    )
    for directory in directories:
        run_tool("mmd", ["-i", str(image), f"::/{directory}"], package="mtools", env=env)
    for name, source in sorted(files.items()):
        run_tool("mcopy", ["-i", str(image), "-m", str(source), f"::/{name}"], package="mtools", env=env)
