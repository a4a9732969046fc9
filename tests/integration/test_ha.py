"""The node-loss model on what the build really renders: the example site and 3-, 5- and
7-server sites lose no user-facing path with any one server, apart from the listed known
gaps; a seeded fault in those manifests fails; the README's table is the model's."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from builder.errors import MeshseedError
from builder.ha import KNOWN_GAPS, analyse, read_manifests, verdict
from builder.ha.report import markdown_table
from builder.ha.workloads import NodeInfo
from builder.site import Role
from tests.conftest import EXAMPLE_SITE, REPO
from tests.integration.cli import meshseed
from tests.pinned import write_test_lock
from tests.unit.sites import site

README_TABLE = re.compile(r"<!-- ha-table:start -->\n(.*?)<!-- ha-table:end -->", re.DOTALL)


def make_site(root: Path, key: Path, text: str) -> Path:
    root.mkdir()
    (root / "site.yaml").write_text(text)
    write_test_lock(root)
    return root


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ha-key") / "master.key"
    path.write_bytes(bytes(range(32)))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, key: Path) -> Path:
    return make_site(tmp_path_factory.mktemp("ha") / "example", key, EXAMPLE_SITE.read_text())


def ha_json(root: Path, key: Path) -> list[dict[str, Any]]:
    result = meshseed("ha", "--json", cwd=root, master_key=key)
    assert result.returncode == 0, result.stderr
    losses: list[dict[str, Any]] = json.loads(result.stdout)
    return losses


def assert_no_server_loss_takes_a_path_down(losses: list[dict[str, Any]]) -> None:
    gaps = {f"{g.namespace}/{g.service}" for g in KNOWN_GAPS}
    for loss in losses:
        if loss["role"] != "server":
            continue
        for path in loss["paths"]:
            if path["status"] == "down":
                # Only the known gaps may take a path down, and they say which.
                assert path["known_gaps"], (loss["node"], path)
                assert {g["service"] for g in path["known_gaps"]} <= gaps
        workloads = {o["subject"]: o for o in loss["workloads"]}
        # Item 5: the SMTP relay is replicated, Meilisearch reschedulable, the Jobs run anywhere.
        assert workloads["openedx/Deployment/smtp"]["status"] == "fine", workloads["openedx/Deployment/smtp"]
        assert workloads["openedx/Deployment/meilisearch"]["status"] == "degraded"
        assert workloads["couchdb/StatefulSet/couchdb"]["status"] == "fine"
        # Prometheus keeps a replica; the issuer moves, filled from the edges' copies.
        assert workloads["monitoring/StatefulSet/prometheus"]["status"] == "fine"
        assert workloads["edge/Deployment/caddy-issuer"]["status"] == "degraded"
        jobs = {
            name.split("/Job/")[1].rsplit("-", 1)[0]: o for name, o in workloads.items() if "/Job/" in name
        }
        assert {"openedx-init", "couchdb-setup"} <= set(jobs)
        assert all(o["status"] == "fine" for o in jobs.values()), jobs


def test_the_example_site_loses_no_path_with_any_server(example: Path, key: Path) -> None:
    losses = ha_json(example, key)
    assert [loss["node"] for loss in losses] == ["edx1", "edx2", "edx3", "vault"]
    assert_no_server_loss_takes_a_path_down(losses)
    build = meshseed("build", cwd=example, master_key=key)
    assert build.returncode == 0, build.stderr
    for gap in KNOWN_GAPS:
        assert f"warning: known gap ({gap.closed_by})" in build.stderr


@pytest.mark.parametrize("servers", [3, 5, 7])
def test_sites_of_3_5_and_7_servers(tmp_path: Path, key: Path, servers: int) -> None:
    root = make_site(tmp_path / "site", key, site(servers=servers))
    losses = ha_json(root, key)
    assert sum(loss["role"] == "server" for loss in losses) == servers
    assert_no_server_loss_takes_a_path_down(losses)
    etcd = losses[0]["workloads"][0]
    assert etcd["reason"] == f"{servers - 1} of {servers} members keep a majority ({servers // 2 + 1} needed)"


def test_a_seeded_fault_in_the_rendered_manifests_fails_naming_the_workload(example: Path, key: Path) -> None:
    result = meshseed("build", cwd=example, master_key=key)
    assert result.returncode == 0, result.stderr
    documents = [dict(d) for d in read_manifests(example / "dist" / "manifests")]
    nodes = [NodeInfo(n, Role.SERVER) for n in ("edx1", "edx2", "edx3")] + [NodeInfo("vault", Role.BACKUP)]
    # No gaps left: nothing to warn about before the fault.
    assert verdict(analyse(documents, nodes)) == ()
    faulty = []
    for document in documents:
        changed = copy.deepcopy(document)
        if document["kind"] == "Deployment" and document["metadata"]["name"] == "mfe":
            changed["spec"]["replicas"] = 1
            changed["spec"]["template"]["spec"]["volumes"].append(
                {"name": "state", "persistentVolumeClaim": {"claimName": "mfe-state"}}
            )
        faulty.append(changed)
    faulty.append(
        {
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "mfe-state", "namespace": "openedx"},
            "spec": {},
        }
    )
    with pytest.raises(MeshseedError) as raised:
        verdict(analyse(faulty, nodes))
    text = str(raised.value)
    assert "openedx/mfe: Deployment/mfe: single copy: PersistentVolumeClaim mfe-state" in text
    assert "losing edx1: learners" in text


def test_the_readme_table_is_the_models(example: Path, key: Path) -> None:
    result = meshseed("ha", "--markdown", cwd=example, master_key=key)
    assert result.returncode == 0, result.stderr
    found = README_TABLE.search((REPO / "README.md").read_text())
    assert found is not None, "README.md has no <!-- ha-table:start --> ... <!-- ha-table:end --> section"
    assert found.group(1) == result.stdout, "regenerate it with `meshseed ha --markdown`"
    nodes = [NodeInfo(n, Role.SERVER) for n in ("edx1", "edx2", "edx3")] + [NodeInfo("vault", Role.BACKUP)]
    built = meshseed("build", cwd=example, master_key=key)
    assert built.returncode == 0, built.stderr
    assert markdown_table(analyse(read_manifests(example / "dist" / "manifests"), nodes)) == result.stdout
