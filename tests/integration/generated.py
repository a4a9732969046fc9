"""The example site's manifests as the build writes them, and ways to read them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY
from tests.integration.cli import meshseed
from tests.integration.debian_fixtures import DebRepo
from tests.pinned import write_test_lock

Documents = list[dict[str, Any]]

# A stand-in for our backup agent's image (images/backup/), from the local test archive:
# the backup component only needs an image of ours named backup.
BACKUP_IMAGE_YAML = """\
name: backup
tag: "0.1.0"
backend: debian
debian:
  architecture: amd64
  keyring: {keyring}
  snapshot: http://127.0.0.1:9/snapshot
  sources:
    - url: {url}
      suite: bookworm
    - url: {security_url}
      suite: bookworm-security
  packages: [mini-app]
files:
  - src: app
    dest: /opt/app
config:
  entrypoint: [/bin/sh, -c]
  cmd: ["cat /opt/app/message.txt"]
"""
BACKUP_IMAGE_MESSAGE = "the backup image, from the build\n"


def build_example(root: Path) -> Path:
    """The example site, pinned with test values and built under `root`: its dist/."""
    key = write_key(root)
    (root / "site.yaml").write_text(EXAMPLE_SITE.read_text())
    write_test_lock(root)
    result = meshseed("build", cwd=root, master_key=key)
    assert result.returncode == 0, result.stderr
    return root / "dist"


def write_key(root: Path) -> Path:
    key = root / "master.key"
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    return key


def write_backup_image(root: Path, repo: DebRepo) -> None:
    """images/backup/ under `root`: the stand-in for our backup image, from `repo`."""
    image = root / "images" / "backup"
    (image / "app").mkdir(parents=True)
    (image / "image.yaml").write_text(
        BACKUP_IMAGE_YAML.format(keyring=repo.keyring, url=repo.url, security_url=repo.security_url)
    )
    (image / "app" / "message.txt").write_text(BACKUP_IMAGE_MESSAGE)


def build_example_with_backup_image(root: Path, repo: DebRepo, site: str | None = None) -> Path:
    """The example site (or `site`), pinned with test values, with our backup image (a
    stand-in from `repo`) pinned and built by `meshseed build --images` under `root`."""
    key = write_key(root)
    (root / "site.yaml").write_text(site or EXAMPLE_SITE.read_text())
    write_test_lock(root)
    write_backup_image(root, repo)
    for args in (["lock", "--only", "debian"], ["build", "--images"]):
        result = meshseed(*args, cwd=root, master_key=key)
        assert result.returncode == 0, result.stderr
        assert "makes no backup image" not in result.stderr
    return root / "dist"


def read_manifest(dist: Path, name: str) -> Documents:
    """The documents of dist/manifests/<name>.yaml."""
    return [doc for doc in yaml.safe_load_all((dist / "manifests" / f"{name}.yaml").read_text()) if doc]


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Documents]:
    dist = build_example(tmp_path_factory.mktemp("listeners"))
    return {path.stem: read_manifest(dist, path.stem) for path in (dist / "manifests").glob("*.yaml")}


def every(manifests: dict[str, Documents]) -> Documents:
    return [doc for docs in manifests.values() for doc in docs]


def named(docs: Documents, kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def config(manifests: dict[str, Documents], config_map: str, key: str) -> str:
    return str(named(every(manifests), "ConfigMap", config_map)["data"][key])


def container(manifests: dict[str, Documents], workload: str) -> dict[str, Any]:
    (found,) = [
        d["spec"]["template"]["spec"]["containers"][0]
        for d in every(manifests)
        if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet") and d["metadata"]["name"] == workload
    ]
    return dict(found)


def host_paths(text: str, root: Path, *paths: str) -> str:
    """The container's absolute paths (whole path components) moved under `root` on the host."""
    for path in paths:
        text = re.sub(rf"(?<=\s){re.escape(path)}(?=[/\s]|$)", f"{root}{path}", text, flags=re.MULTILINE)
    return text


def kubelet_args(container: dict[str, Any], values: dict[str, str]) -> list[str]:
    """The container's args with $(VAR) expanded as the kubelet does, from `values` for
    the variables its env takes from the pod's fields (status.hostIP and the like)."""
    env = {variable["name"]: values[variable["name"]] for variable in container.get("env", [])}
    pattern = re.compile(r"\$\((\w+)\)")
    return [
        pattern.sub(lambda match: env.get(match.group(1), match.group(0)), arg) for arg in container["args"]
    ]
