"""git, for the commit a publication's provenance names."""

from __future__ import annotations

import shutil
from pathlib import Path

from builder.errors import MeshseedError
from builder.tools.run import run_tool


def head_commit(checkout: Path) -> str | None:
    """The commit checked out at `checkout`, or None outside a git checkout (or without git)."""
    if shutil.which("git") is None:
        return None
    try:
        commit = run_tool("git", ["-C", str(checkout), "rev-parse", "--verify", "HEAD"], package="git")
    except MeshseedError:
        return None
    return commit.strip() or None
