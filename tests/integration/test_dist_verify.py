"""`meshseed verify dist/SHA256SUMS` checks the whole tree: a file it does not list (a
planted cluster-admin binding among the manifests) is refused, as is a listing that
reaches outside dist/."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from builder.publish.run import sign_checksums
from builder.sign.keys import load_private_key
from tests.conftest import EXAMPLE_SITE
from tests.integration.cli import meshseed
from tests.pinned import write_test_lock

PASSWORD = "verify test password"
PLANTED = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: zz-extra}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: default, namespace: default}]
"""


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built and signed dist/ of the example site (with test pins, so it has manifests)."""
    work = tmp_path_factory.mktemp("verify")
    master_key = work / "master.key"
    master_key.write_bytes(bytes(range(32)))
    master_key.chmod(0o600)
    shutil.copy(EXAMPLE_SITE, work / "site.yaml")
    write_test_lock(work)
    env = {"COSIGN_PASSWORD": PASSWORD}
    for args in (["build"], ["keys", "generate", "--out", "keys"]):
        result = meshseed(*args, cwd=work, master_key=master_key, env=env)
        assert result.returncode == 0, result.stderr
    sign(work / "dist", work / "keys")
    return work


def sign(dist: Path, keys: Path) -> None:
    """As `meshseed publish --key` signs dist/SHA256SUMS."""
    sign_checksums(dist, load_private_key((keys / "cosign.key").read_bytes(), PASSWORD, "cosign.key"))


@pytest.fixture
def work(signed: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "work"
    shutil.copytree(signed, copy, symlinks=True)
    return copy


def verify(work: Path) -> tuple[int, str]:
    result = meshseed(
        "verify", "--key", "keys/cosign.pub", "dist/SHA256SUMS", cwd=work, master_key=work / "master.key"
    )
    assert "Traceback" not in result.stderr
    return result.returncode, result.stdout + result.stderr


def test_the_signed_tree_verifies(work: Path) -> None:
    status, output = verify(work)
    assert status == 0, output
    assert (work / "dist" / "manifests").is_dir()


def test_a_planted_manifest_is_refused(work: Path) -> None:
    (work / "dist" / "manifests" / "zz-extra.yaml").write_text(PLANTED)
    status, output = verify(work)
    assert status == 1
    assert "error: dist: holds what SHA256SUMS does not list: manifests/zz-extra.yaml" in output


@pytest.mark.parametrize(
    ("plant", "named"),
    [
        (lambda dist: (dist / "nodes" / "edx9").mkdir(), "nodes/edx9/"),
        (
            lambda dist: (dist / "nodes" / "edx1" / "extra").symlink_to("/etc/passwd"),
            "nodes/edx1/extra (a symlink)",
        ),
        (lambda dist: (dist / ".hidden").write_text("x"), ".hidden"),
    ],
)
def test_anything_else_unlisted_is_refused(work: Path, plant: object, named: str) -> None:
    plant(work / "dist")  # type: ignore[operator]
    status, output = verify(work)
    assert status == 1
    assert f"error: dist: holds what SHA256SUMS does not list: {named}" in output


def test_a_listed_file_replaced_by_a_symlink_is_refused(work: Path) -> None:
    listed = work / "dist" / "nodes" / "edx1" / "meta-data"
    target = work / "elsewhere"
    target.write_bytes(listed.read_bytes())
    listed.unlink()
    listed.symlink_to(target)
    status, output = verify(work)
    assert status == 1
    assert "nodes/edx1/meta-data (a symlink)" in output


def test_a_signed_listing_that_reaches_outside_is_refused(work: Path) -> None:
    (work / "outside").write_text("x\n")
    sums = work / "dist" / "SHA256SUMS"
    sums.write_text(sums.read_text() + "3" * 64 + "  ../outside\n")
    sign(work / "dist", work / "keys")
    status, output = verify(work)
    assert status == 1
    assert "dist/SHA256SUMS:" in output and "'../outside' is not a plain relative path listed once" in output
