"""Each role's air-gap bundle holds exactly the images of the workloads scheduled there:
the plan's bundles (from the components' declarations) agree with the rendered
manifests' nodeSelectors, node affinities and tolerations, read as the scheduler would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.airgap import AirgapSettings
from builder.artifacts import Artifacts
from builder.cluster.placement import fits, images_by_role
from builder.lock import Lock
from builder.oci.registry import Registries
from builder.plan import BuildSettings, plan
from builder.secrets import SecretDeriver
from builder.site import Role, load_site
from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY
from tests.integration.cli import meshseed
from tests.pinned import BACKUP_IMAGE_ENTRY, write_test_lock


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Lock]:
    root = tmp_path_factory.mktemp("placement")
    key = root / "master.key"
    key.write_bytes(TEST_MASTER_KEY)
    key.chmod(0o600)
    (root / "site.yaml").write_text(EXAMPLE_SITE.read_text())
    lock = write_test_lock(root, extra_images=BACKUP_IMAGE_ENTRY)
    result = meshseed("build", cwd=root, master_key=key)
    assert result.returncode == 0, result.stderr
    return root, lock


def planned_bundles(root: Path, lock: Lock) -> dict[str, set[str]]:
    """Role -> the lock names of the images its planned air-gap bundle holds (nothing is fetched)."""
    site = load_site(root / "site.yaml")
    settings = BuildSettings(
        deriver=SecretDeriver(TEST_MASTER_KEY, site.cluster),
        epoch=0,
        airgap=AirgapSettings(Registries(), Artifacts()),
        lock=lock,
    )
    return {
        derivation.name.removeprefix("airgap-"): {dep.name.removeprefix("image-") for dep in derivation.deps}
        for derivation in plan(site, settings)
        if derivation.name.startswith("airgap-")
    }


def scheduled(root: Path, lock: Lock) -> dict[str, set[str]]:
    """Role -> the lock names of the images the rendered manifests' pods can run there."""
    docs = [
        doc
        for path in sorted((root / "dist" / "manifests").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    names = {image.pinned: name for name, image in lock.images.items()}
    roles = {node.role for node in load_site(root / "site.yaml").nodes}
    return {role.value: {names[ref] for ref in refs} for role, refs in images_by_role(docs, roles).items()}


def test_each_roles_bundle_holds_the_images_its_workloads_run(built: tuple[Path, Lock]) -> None:
    root, lock = built
    bundles = planned_bundles(root, lock)
    # k3s's own images are no workload of the manifests: every role gets them.
    system = {name for name in lock.images if name.startswith("k3s-")}
    assert {role: names - system for role, names in bundles.items()} == scheduled(root, lock)
    assert all(system <= names for names in bundles.values())
    # The backup node runs the datastores' dump tools and our agent, and nothing of the servers'.
    # openedx: Garage's backup job reads the buckets with its Python and boto3.
    assert bundles["backup"] - system == {"backup", "mongodb", "mysql", "node-exporter", "openedx"}


def test_without_the_manifests_the_bundles_follow_upstream_yaml(built: tuple[Path, Lock]) -> None:
    root, lock = built
    # A lock that misses an image the manifests need: no manifests, no workloads to read.
    partial = Lock(
        lock.upstream_sha256,
        lock.k3s_version,
        lock.mycelium_version,
        lock.platforms,
        {name: image for name, image in lock.images.items() if name != "mysql"},
        lock.binaries,
    )
    bundles = planned_bundles(root, partial)
    assert bundles["backup"] == {name for name, image in partial.images.items() if "backup" in image.roles}


def pod(**spec: Any) -> dict[str, Any]:
    return spec


@pytest.mark.parametrize(
    ("spec", "roles"),
    [
        (pod(), {Role.SERVER, Role.AGENT}),
        (pod(nodeSelector={"node-role.kubernetes.io/control-plane": "true"}), {Role.SERVER}),
        (pod(nodeSelector={"meshseed/role": "backup"}), set()),
        (
            pod(
                nodeSelector={"meshseed/role": "backup"},
                tolerations=[
                    {"key": "meshseed/role", "operator": "Equal", "value": "backup", "effect": "NoSchedule"}
                ],
            ),
            {Role.BACKUP},
        ),
        (pod(tolerations=[{"operator": "Exists"}]), set(Role)),
        (
            pod(tolerations=[{"key": "meshseed/role", "operator": "Exists", "effect": "NoExecute"}]),
            {Role.SERVER, Role.AGENT},
        ),
        (
            pod(
                tolerations=[{"operator": "Exists"}],
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {"key": "meshseed/role", "operator": "NotIn", "values": ["backup"]}
                                    ]
                                }
                            ]
                        }
                    }
                },
            ),
            {Role.SERVER, Role.AGENT},
        ),
    ],
)
def test_the_scheduler_model(spec: dict[str, Any], roles: set[Role]) -> None:
    assert {role for role in Role if fits(spec, role)} == roles
