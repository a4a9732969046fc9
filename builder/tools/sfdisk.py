"""sfdisk: a GUID partition table written from a script, with every identifier given."""

from __future__ import annotations

from pathlib import Path

from builder.tools.run import run_tool

PACKAGE = "fdisk"


def write_gpt(image: Path, script: str) -> None:
    """Partition `image` (a file of the disk's full size) as `script` says."""
    run_tool(
        "sfdisk", ["--quiet", "--no-reread", "--no-tell-kernel", str(image)], package=PACKAGE, stdin=script
    )
