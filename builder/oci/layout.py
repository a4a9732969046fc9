"""Export an image from the store as a plain OCI image layout directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from builder.errors import bad_input


def export_layout(source: Path, target: Path) -> None:
    """Copy a fetched image's layout to `target`, which must not exist or be empty."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise bad_input(f"{target}: exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if relative.as_posix() == ".entry.json":
            continue
        if path.is_dir():
            (target / relative).mkdir(exist_ok=True)
        else:
            shutil.copyfile(path, target / relative)
