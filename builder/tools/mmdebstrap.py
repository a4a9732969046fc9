"""mmdebstrap: a Debian root filesystem with maintainer scripts run, as a reproducible tarball."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from builder.tools.run import run_tool

PACKAGE = "mmdebstrap"


def version() -> str:
    return run_tool("mmdebstrap", ["--version"], package=PACKAGE).strip()


def install_tarball(
    *,
    suite: str,
    source: str,
    packages: Sequence[str],
    target: Path,
    epoch: int,
    hooks: Sequence[str] = (),
) -> None:
    """Install exactly `packages` (the custom variant: no others, no Recommends) from
    `source` into the tarball `target`. mmdebstrap's output repeats byte for byte when
    SOURCE_DATE_EPOCH is set; the environment is otherwise pinned here so that the build
    machine's locale and time zone do not reach maintainer scripts. `hooks` run
    at the end, in the finished tree."""
    args = ["--mode=root", "--variant=custom", "--format=tar", f"--include={','.join(packages)}"]
    args += [f"--customize-hook={hook}" for hook in hooks]
    args += [suite, str(target), source]
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "SOURCE_DATE_EPOCH": str(epoch),
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }
    run_tool("mmdebstrap", args, package=PACKAGE, env=env, timeout=3600)
