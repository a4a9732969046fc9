"""Each role's air-gap bundle holds exactly the images of the workloads scheduled there,
and each role's archive of our images exactly ours that run there: the plan's bundles and
archives (from the components' declarations) agree with the rendered manifests'
nodeSelectors, node affinities and tolerations, read as the scheduler would."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.airgap import AirgapSettings
from builder.artifacts import Artifacts
from builder.cluster.placement import fits, images_by_role
from builder.images.plan import OwnImages
from builder.images.spec import image_specs
from builder.lock import Lock
from builder.lock.file import read_lock
from builder.oci.registry import Registries
from builder.plan import BuildSettings, plan
from builder.secrets import SecretDeriver
from builder.site import Role, load_site
from tests.conftest import TEST_MASTER_KEY
from tests.integration.debian_fixtures import DebRepo
from tests.integration.generated import build_example_with_backup_image


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, deb_repo: DebRepo) -> tuple[Path, Lock]:
    root = tmp_path_factory.mktemp("placement")
    build_example_with_backup_image(root, deb_repo)
    return root, read_lock(root / "images.lock")


def planned(root: Path, lock: Lock) -> dict[str, dict[str, set[str]]]:
    """ "airgap" and "own-images": role -> the names of the images its planned air-gap
    bundle or archive of ours holds (nothing is fetched or built)."""
    site = load_site(root / "site.yaml")
    settings = BuildSettings(
        deriver=SecretDeriver(TEST_MASTER_KEY, site.cluster),
        epoch=0,
        airgap=AirgapSettings(Registries(), Artifacts()),
        images=OwnImages(image_specs(root / "images"), Artifacts(), {}),
        lock=lock,
    )
    found: dict[str, dict[str, set[str]]] = {"airgap": {}, "own-images": {}}
    for derivation in plan(site, settings):
        kind, _, role = derivation.name.rpartition("-")
        if kind in found:
            found[kind][role] = {
                dep.name.removeprefix("image-").removeprefix("own-") for dep in derivation.deps
            }
    return found


def scheduled(root: Path, lock: Lock) -> dict[str, set[str]]:
    """Role -> the names of the images (upstream and ours) the rendered manifests' pods can run there."""
    docs = [
        doc
        for path in sorted((root / "dist" / "manifests").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    names = {image.pinned: name for name, image in lock.images.items()}
    (ours,) = json.loads((root / "dist" / "images" / "backup" / "index.json").read_text())["manifests"]
    names[f"meshseed.local/backup@{ours['digest']}"] = "backup"
    roles = {node.role for node in load_site(root / "site.yaml").nodes}
    return {role.value: {names[ref] for ref in refs} for role, refs in images_by_role(docs, roles).items()}


def test_each_roles_bundle_and_archive_hold_the_images_its_workloads_run(built: tuple[Path, Lock]) -> None:
    root, lock = built
    found = planned(root, lock)
    bundles, archives = found["airgap"], found["own-images"]
    # k3s's own images are no workload of the manifests: every role gets them.
    system = {name for name in lock.images if name.startswith("k3s-")}
    assert all(system <= names for names in bundles.values())
    carried = {role: (names - system) | archives.get(role, set()) for role, names in bundles.items()}
    assert carried == scheduled(root, lock)
    # The backup node runs the datastores' dump tools and our agent, and nothing of the servers'.
    # openedx: Garage's backup job reads the buckets with its Python and boto3.
    assert bundles["backup"] - system == {"mongodb", "mysql", "node-exporter", "openedx"}
    # Our agent comes in the backup role's archive, and in no other role's.
    assert archives == {"backup": {"backup"}}


def test_without_the_manifests_the_bundles_follow_upstream_yaml(built: tuple[Path, Lock]) -> None:
    root, lock = built
    # A lock that misses an image the manifests need: no manifests, no workloads to read.
    partial = dataclasses.replace(
        lock, images={name: image for name, image in lock.images.items() if name != "mysql"}
    )
    found = planned(root, partial)
    assert found["airgap"]["backup"] == {
        name for name, image in partial.images.items() if "backup" in image.roles
    }
    # And nothing runs our images, so no role gets an archive of them.
    assert found["own-images"] == {}


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
