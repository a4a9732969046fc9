"""The real backup image, built from the real Debian archive with the committed lock.

Marked `network`: it does not run by default (`pytest -m network`) and needs
deb.debian.org.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.cli import meshseed

pytestmark = pytest.mark.network


def build(workdir: Path, key: Path, store: str) -> str:
    result = meshseed(
        "build",
        "--images",
        "--store",
        store,
        "-o",
        f"dist-{store}",
        "--lock",
        str(REPO / "images.lock"),
        "--images-dir",
        str(REPO / "images"),
        cwd=workdir,
        master_key=key,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr
    index = json.loads((workdir / f"dist-{store}" / "images" / "backup" / "index.json").read_text())
    return str(index["manifests"][0]["digest"])


def test_the_backup_image_builds_reproducibly_and_runs(tmp_path: Path, master_key_file: Path) -> None:
    shutil.copy(REPO / "site.yaml", tmp_path / "site.yaml")
    first, second = build(tmp_path, master_key_file, "one"), build(tmp_path, master_key_file, "two")
    assert first == second
    podman = shutil.which("podman")
    if podman:
        ran = subprocess.run(
            [
                podman,
                "--root",
                str(tmp_path / "p"),
                "--runroot",
                "/tmp/meshseed-net-run",
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
                "run",
                "--rm",
                "--pull",
                "never",
                "--network",
                "none",
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1000:1000",
                f"oci:{tmp_path / 'dist-one' / 'images' / 'backup'}:0.1.0",
                "--version",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert ran.stdout.strip() == "backup 0.1.0", ran.stderr
