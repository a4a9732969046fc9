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

from tests.backup.couchdb_fixtures import Server, agent, fill
from tests.conftest import REPO
from tests.integration.cli import meshseed
from tests.tools import require

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


def podman_argv(podman: str, state: Path, *run_options: str) -> list[str]:
    storage = ["--root", str(state), "--runroot", "/tmp/meshseed-net-run", "--storage-driver", "vfs"]
    engine = ["--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"]
    limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
    return [podman, *storage, *engine, "run", "--rm", "--pull", "never", *limits, *run_options]


def test_the_backup_image_builds_reproducibly_and_runs(
    tmp_path: Path, master_key_file: Path, pouchdb: Server
) -> None:
    shutil.copy(REPO / "site.yaml", tmp_path / "site.yaml")
    first, second = build(tmp_path, master_key_file, "one"), build(tmp_path, master_key_file, "two")
    assert first == second
    podman = require("podman", "podman")
    image = f"oci:{tmp_path / 'dist-one' / 'images' / 'backup'}:0.1.0"
    ran = subprocess.run(
        [*podman_argv(podman, tmp_path / "p", "--network", "none"), image, "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert ran.stdout.strip() == "backup 0.1.0", ran.stderr
    # The agent in its image (the standard library only) dumps a real CouchDB-API server.
    fill(pouchdb, "campus", docs=500, attachment_sizes=(100_000,))
    out = tmp_path / "backups"
    out.mkdir()
    out.chmod(0o777)  # the image runs as its own unprivileged user; in the cluster, fsGroup does this
    dumped = subprocess.run(
        [
            *podman_argv(podman, tmp_path / "p", "--network", "host", "-v", f"{out}:/backups"),
            image,
            "couchdb",
            "--url",
            pouchdb.url,
            "--out",
            "/backups/couchdb",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert dumped.returncode == 0, dumped.stderr
    (snapshot,) = (out / "couchdb").glob("2*")
    assert agent("verify", str(snapshot)).returncode == 0
