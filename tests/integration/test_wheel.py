"""An installed meshseed builds exactly what the checkout builds.

The sdist is made from a copy of the checkout, the wheel from the sdist, and the wheel
is installed with its dependencies (at the versions requirements/dev.lock pins) into a
fresh venv outside the checkout. Its `meshseed build` then runs in folders holding only
what a user has there, and every file in dist/ but build.json and SHA256SUMS (which name
the builder's own version) must be byte-identical to the checkout's build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE_SITE, REPO
from tests.integration.cli import environment
from tests.integration.cli import meshseed as checkout_meshseed
from tests.integration.debian_fixtures import DebRepo
from tests.integration.test_own_images import make_project
from tests.pinned import write_test_lock
from tests.tools import unavailable

# build.json and SHA256SUMS carry each derivation's key, which includes the builder's
# version (a digest of its own source); everything else must match.
VERSIONED = {"build.json", "SHA256SUMS"}
# What a checkout has besides the distribution's sources.
NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".nox", ".meshseed", "dist", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `meshseed` command of a fresh venv that has only the wheel and its dependencies."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SHIPPED)
    wheelhouse = Path(os.environ.get("MESHSEED_TEST_WHEELHOUSE", REPO / ".nox" / "wheelhouse"))
    if not any(wheelhouse.glob("tutor-*.whl")):
        unavailable(f"{wheelhouse} holds no dependency wheels; `nox -s tests` makes them")
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(REPO, source, symlinks=True, ignore=NOT_SHIPPED)
    offline = ["--no-isolation"]
    run(sys.executable, "-m", "build", "--sdist", *offline, "--outdir", base / "sdist", source)
    (sdist,) = (base / "sdist").glob("meshseed-*.tar.gz")
    run(sys.executable, "-m", "build", "--wheel", *offline, "--outdir", base / "wheel", sdist)
    (wheel,) = (base / "wheel").glob("meshseed-*.whl")
    venv = base / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "pip", "install", "--quiet", "--no-index", "--find-links", wheelhouse, wheel)
    # Nothing of the checkout may be reachable from the installed command.
    where = run(venv / "bin" / "python", "-c", "import builder; print(builder.__file__)", cwd=base)
    assert Path(where.strip()).is_relative_to(venv)
    return venv / "bin" / "meshseed"


def installed_meshseed(meshseed: Path, *args: str, cwd: Path, key: Path) -> None:
    env = {**environment(key), "PATH": os.environ["PATH"]}
    env.pop("PYTHONPATH", None)
    run(meshseed, *args, cwd=cwd, env=env)


def assert_same_dist(installed_dist: Path, checkout_dist: Path) -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.name not in VERSIONED
        }

    ours, theirs = files(installed_dist), files(checkout_dist)
    assert sorted(ours) == sorted(theirs)
    differing = [name for name in ours if ours[name] != theirs[name]]
    assert not differing, f"differ between the installed and the checkout build: {differing}"


def test_an_installed_wheel_builds_the_example_site_like_the_checkout(
    installed: Path, tmp_path: Path, master_key_file: Path
) -> None:
    # Only site.yaml: templates, upstream.yaml and images.lock come from the package.
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(EXAMPLE_SITE, site / "site.yaml")
    installed_meshseed(installed, "build", cwd=site, key=master_key_file)
    checkout = checkout_meshseed(
        "build",
        str(EXAMPLE_SITE),
        "-o",
        str(tmp_path / "checkout"),
        "--store",
        str(tmp_path / "store"),
        cwd=REPO,
        master_key=master_key_file,
    )
    assert checkout.returncode == 0, checkout.stderr
    assert sorted(p.name for p in (site / "dist" / "nodes").iterdir()) == ["edx1", "edx2", "edx3", "vault"]
    assert_same_dist(site / "dist", tmp_path / "checkout")


def test_an_installed_wheel_builds_manifests_and_images_like_the_checkout(
    installed: Path, deb_repo: DebRepo, tmp_path: Path, master_key_file: Path
) -> None:
    # A site folder with pins of its own: every cluster image (test digests) and a small
    # image of ours from the local Debian archive, so the manifests' templates and the
    # image builder both run from the package.
    site = make_project(tmp_path / "site", deb_repo)
    write_test_lock(site)
    locked = checkout_meshseed("lock", "--only", "debian", cwd=site, master_key=master_key_file)
    assert locked.returncode == 0, locked.stderr
    installed_meshseed(installed, "build", "--images", cwd=site, key=master_key_file)
    checkout = checkout_meshseed(
        "build",
        "--images",
        "-o",
        "checkout-dist",
        "--store",
        str(tmp_path / "store"),
        cwd=site,
        master_key=master_key_file,
    )
    assert checkout.returncode == 0, checkout.stderr
    assert (site / "dist" / "manifests" / "couchdb.yaml").exists()
    assert (site / "dist" / "images" / "mini" / "index.json").exists()
    assert_same_dist(site / "dist", site / "checkout-dist")
