"""`meshseed lock` against the real registries and release servers.

Marked `network`: it does not run by default (`pytest -m network` runs it) and needs a
machine that can reach Docker Hub, quay.io and GitHub.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.cli import meshseed

pytestmark = pytest.mark.network


def test_lock_resolves_the_real_upstream(tmp_path: Path, master_key_file: Path) -> None:
    shutil.copytree(REPO / "images", tmp_path / "images")
    result = meshseed("lock", cwd=tmp_path, master_key=master_key_file, timeout=1800)
    assert result.returncode == 0, result.stderr
    lock = json.loads((tmp_path / "images.lock").read_text())
    assert {"openedx", "couchdb", "caddy", "prometheus", "node-exporter"} <= set(lock["images"])
    assert any(name.startswith("k3s-mirrored-pause") for name in lock["images"])
    assert all("linux/amd64" in image["platforms"] for image in lock["images"].values())
    check = meshseed("lock", "--check", cwd=tmp_path, master_key=master_key_file)
    assert check.returncode == 0
