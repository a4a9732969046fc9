"""The example site's manifests as the build writes them, and ways to read them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY
from tests.integration.cli import meshseed
from tests.pinned import write_test_lock

Documents = list[dict[str, Any]]


def build_example(root: Path) -> Path:
    """The example site, pinned with test values and built under `root`: its dist/."""
    key = root / "master.key"
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    (root / "site.yaml").write_text(EXAMPLE_SITE.read_text())
    write_test_lock(root)
    result = meshseed("build", cwd=root, master_key=key)
    assert result.returncode == 0, result.stderr
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
