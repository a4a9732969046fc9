"""Run the installed `meshseed` command as a user would, in a directory of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

MESHSEED = str(Path(sys.executable).with_name("meshseed"))


def environment(master_key: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("SOURCE_DATE")}
    env["MESHSEED_MASTER_KEY_FILE"] = str(master_key)
    env.update(extra)
    return env


def meshseed(
    *args: str,
    cwd: Path,
    master_key: Path,
    preexec_fn: Callable[[], None] | None = None,
    wrapper: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*wrapper, MESHSEED, *args],
        cwd=cwd,
        env={**environment(master_key), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


def tree_bytes(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under root with its permission bits and content."""
    return {
        path.relative_to(root).as_posix(): (path.stat().st_mode & 0o7777, path.read_bytes())
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
