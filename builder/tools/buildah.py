"""buildah: reproducible Containerfile builds, with storage of our choosing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from builder.tools.run import run_tool

PACKAGE = "buildah"


class Buildah:
    """buildah with its own storage (vfs: no kernel support needed) under `work`."""

    def __init__(self, work: Path) -> None:
        self.work = work.absolute()

    def _run(self, *args: str, cwd: Path | None = None) -> str:
        storage = [
            "--root",
            str(self.work / "root"),
            "--runroot",
            str(self.work / "run"),
            "--storage-driver",
            "vfs",
        ]
        return run_tool("buildah", [*storage, *args], package=PACKAGE, cwd=cwd)

    def version(self) -> str:
        return run_tool("buildah", ["--version"], package=PACKAGE).strip()

    def build(
        self,
        containerfile: Path,
        context: Path,
        *,
        cwd: Path,
        layout: str,
        tag: str,
        timestamp: int,
        build_args: Mapping[str, str],
        isolation: str = "chroot",
    ) -> None:
        """Build into the OCI layout `cwd/layout`. `--timestamp` pins every date, so digests repeat.

        buildah reads an `oci:` path as an image name too, and refuses upper case in it, so
        layouts (the output, and bases in `build_args`) are named relative to `cwd`.
        """
        args = ["build", "--quiet", "--timestamp", str(timestamp), "--isolation", isolation, "--pull=never"]
        for key, value in sorted(build_args.items()):
            args += ["--build-arg", f"{key}={value}"]
        args += ["-f", str(containerfile.absolute()), "-t", f"oci:{layout}:{tag}", str(context.absolute())]
        self._run(*args, cwd=cwd)
