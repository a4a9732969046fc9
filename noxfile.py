"""Sessions for developing and building meshseed. `nox -l` lists them."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
# Exact versions of the test and lint tools, so that a lint or test result does not
# change under us when a tool releases; `nox -s lock-dev-tools` refreshes it.
DEV_LOCK = ROOT / "requirements" / "dev.lock"


def install(session: nox.Session, extras: str = "") -> None:
    target = f".[{extras}]" if extras else "."
    constraints = ["-c", str(DEV_LOCK)] if DEV_LOCK.exists() else []
    session.install("-e", target, *constraints)


# Wheels of meshseed's dependencies, so that the wheel test installs into a fresh venv
# without reaching an index while the tests run.
WHEELHOUSE = ROOT / ".nox" / "wheelhouse"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest); extra arguments go to pytest."""
    install(session, "test")
    constraints = ["-c", str(DEV_LOCK)] if DEV_LOCK.exists() else []
    session.run("pip", "wheel", "--quiet", "--wheel-dir", str(WHEELHOUSE), ".", *constraints)
    session.run("pytest", *session.posargs, env={"MESHSEED_TEST_WHEELHOUSE": str(WHEELHOUSE)})


@nox.session
def lint(session: nox.Session) -> None:
    """Check style with ruff and types with mypy --strict."""
    install(session, "lint")
    paths = ["builder", "tests", "bench", "images/backup/agent", "noxfile.py"]
    session.run("ruff", "check", *paths)
    session.run("ruff", "format", "--check", *paths)
    session.run("mypy", "builder", *session.posargs)
    # The backup agent runs in its own image, on the standard library alone.
    session.run("mypy", "images/backup/agent/backup_agent")


@nox.session(name="build-images")
def build_images(session: nox.Session) -> None:
    """Build dist/ for the example site, with our own images, first pinning k3s, Mycelium and
    the upstream images where images.lock does not yet; arguments go to `meshseed build`."""
    install(session)
    meshseed = shutil.which("meshseed", path=session.bin)
    assert meshseed is not None
    pin_upstream(meshseed, session.log)
    session.run("meshseed", "build", "--images", *session.posargs)


@nox.session(name="build-disks", default=False)
def build_disks(session: nox.Session) -> None:
    """Build dist/ with the bootable disk images too (dist/disks/<role>.raw.zst and
    dist/nodes/<node>/disk.raw.zst): `meshseed build --images --disks`, which fetches every
    pinned image and binary, so images.lock must pin k3s, Mycelium and the upstream images
    and their registries must be reachable (or mirrored with --mirror)."""
    install(session)
    meshseed = shutil.which("meshseed", path=session.bin)
    assert meshseed is not None
    pin_upstream(meshseed, session.log)
    session.run("meshseed", "build", "--images", "--disks", *session.posargs)


def pin_upstream(meshseed: str, say: Callable[[str], object]) -> None:
    """Run `meshseed lock --only upstream` when images.lock does not pin upstream.yaml (our
    images' Debian pins stay as committed). Without the registries the build still makes the
    seeds and our images, so then this says why in one line and the session goes on."""
    check = [meshseed, "lock", "--check", "--only", "upstream"]
    if subprocess.run(check, capture_output=True, check=False).returncode != 1:
        return  # 0: pinned already; 2: bad input, which the build reports in full
    locked = subprocess.run(
        [meshseed, "lock", "--only", "upstream"], capture_output=True, text=True, check=False
    )
    lines = locked.stderr.splitlines()
    unpinned = "images.lock did not pin k3s, Mycelium and the upstream images"
    if locked.returncode == 0:
        say(f"{unpinned}: {lines[-1] if lines else 'now it does'}")
        return
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    reason = errors[-1] if errors else f"exit status {locked.returncode}"
    say(f"{unpinned}, and `meshseed lock` failed ({reason}); building what can be built without them")


@nox.session(default=False)
def publish(session: nox.Session) -> None:
    """Push the built images (never rebuilding), signed and attested with $COSIGN_KEY_FILE
    (default cosign.key, sealed with $COSIGN_PASSWORD); arguments go to `meshseed publish`,
    e.g. `nox -s publish -- --registry ghcr.io/org`."""
    install(session)
    key = os.environ.get("COSIGN_KEY_FILE", "cosign.key")
    session.run("meshseed", "publish", "--key", key, *session.posargs)


@nox.session(default=False)
def e2e(session: nox.Session) -> None:
    """Boot seeds in QEMU guests (TCG) and check what the nodes did; arguments go to pytest."""
    install(session, "test")
    # The disk images' reproducibility check has a session of its own: it is slow.
    session.run("pytest", "-m", "e2e and not disk_repro", "tests/e2e", *session.posargs)


@nox.session(default=False)
def repro(session: nox.Session) -> None:
    """Build twice under varied conditions and fail on any differing byte."""
    install(session)
    session.run("python", "tests/reprocheck.py", *session.posargs)


@nox.session(name="repro-disks", default=False)
def repro_disks(session: nox.Session) -> None:
    """Build the disk images twice (an e2e test site, test doubles for k3s and Mycelium,
    the committed Debian pins) under varied conditions and fail on any differing byte.
    Slow (two root file systems from scratch), so not part of `nox -s e2e`."""
    install(session, "test")
    session.run("pytest", "-m", "e2e and disk_repro", "tests/e2e/test_disk_boot.py", *session.posargs)


@nox.session(default=False)
def mutation(session: nox.Session) -> None:
    """Mutate secrets, mycelium, det, store and site one change at a time and list the
    mutants no test kills (slow: tens of minutes); arguments go to tests/mutation.py,
    e.g. `nox -s mutation -- builder/secrets.py --jobs 2`."""
    install(session, "test")
    session.run("python", "tests/mutation.py", *session.posargs)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Measure build wall time and peak RSS; writes bench/results.json."""
    # The bench starts its servers with the test suite's fixtures.
    install(session, "test")
    session.run("python", "bench/run.py", *session.posargs)


@nox.session(name="lock-dev-tools", default=False)
def lock_dev_tools(session: nox.Session) -> None:
    """Re-pin the test and lint tools in requirements/dev.lock."""
    session.install("-e", ".[test,lint]")
    frozen = session.run("pip", "freeze", "--exclude-editable", silent=True)
    assert isinstance(frozen, str)
    lines = sorted(line for line in frozen.splitlines() if "==" in line)
    DEV_LOCK.parent.mkdir(exist_ok=True)
    DEV_LOCK.write_text("# Generated by `nox -s lock-dev-tools`; do not edit.\n" + "\n".join(lines) + "\n")
