""".ci/run is kind to a developer's machine: packages come without Recommends (so every
package a test needs is named), and the policy-rc.d it adds is gone when it exits, however
it exits. The script runs for real, in a mount namespace whose /usr/sbin is a scratch
folder, with apt-get, npm, python3 and nox replaced by recorders."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.tools import require

CI_RUN = REPO / ".ci" / "run"
POLICY = "/usr/sbin/policy-rc.d"

# Every Debian system has these (Essential or priority required).
BASE = {"apt", "coreutils", "dash", "dpkg", "mount", "util-linux"}

RECORDER = """#!/bin/sh
name=$(basename "$0")
policy=absent
if [ -e {policy} ]; then policy=present; fi
echo "$name $* [policy $policy]" >> "$RECORD"
if [ "$name $1" = "apt-get install" ]; then
    case "$FAKE_INSTALL" in
        fail) exit 100 ;;
        interrupt) kill -TERM "$PPID" ;;
    esac
fi
exit 0
"""


def listed_packages() -> set[str]:
    text = CI_RUN.read_text()
    block = text[text.index("packages=(") + len("packages=(") : text.index("\n)\n")]
    return {word for line in block.splitlines() for word in line.split("#")[0].split()}


def test_every_package_a_test_requires_is_installed_by_ci_run() -> None:
    """Without Recommends nothing arrives by luck: each `require(program, package)` of the
    tests names a package .ci/run installs, or one every Debian system has."""
    pattern = re.compile(r'require\(\s*"[^"]+",\s*"([a-z0-9][a-z0-9.+-]*)"')
    required = {
        package
        for path in [*REPO.joinpath("tests").rglob("*.py"), *REPO.joinpath("bench").rglob("*.py")]
        for package in pattern.findall(path.read_text())
    }
    required.discard("meshseed-pkg")  # the tests' own example of a missing program
    assert required - listed_packages() - BASE == set()


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("a mount namespace needs root")
    require("unshare", "util-linux")
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for name in ("apt-get", "npm", "pouchdb-server", "python3", "nox"):
        (fakes / name).write_text(RECORDER.format(policy=POLICY))
        (fakes / name).chmod(0o755)
    (tmp_path / "sbin").mkdir()
    return tmp_path


def run_ci(sandbox: Path, install: str = "", existing_policy: bool = False) -> tuple[int, list[str], bool]:
    """.ci/run's status, what the recorders saw, and whether a policy-rc.d is left."""
    record = sandbox / "record"
    record.unlink(missing_ok=True)
    if existing_policy:
        (sandbox / "sbin" / "policy-rc.d").write_text("#!/bin/sh\nexit 0\n")
    script = (
        'mount --bind "$1" /usr/sbin || exit 99\n'
        'bash "$2"; status=$?\n'
        "if [ -e /usr/sbin/policy-rc.d ]; then echo left; fi\n"
        "exit $status\n"
    )
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            sandbox / "sbin",
            CI_RUN,
        ],
        env={
            "PATH": f"{sandbox / 'fakes'}:/usr/bin:/bin",
            "RECORD": str(record),
            "FAKE_INSTALL": install,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 99, result.stderr
    return result.returncode, record.read_text().splitlines(), result.stdout.strip() == "left"


def test_packages_come_without_recommends_and_the_policy_goes(sandbox: Path) -> None:
    status, calls, left = run_ci(sandbox)
    assert status == 0
    installs = [call for call in calls if call.startswith("apt-get install")]
    assert installs, calls
    for call in installs:
        assert " --no-install-recommends " in call, call
        # Daemons are installed, not started, while the packages go in.
        assert call.endswith("[policy present]"), call
    # Gone before the tests run, not only when the script ends.
    assert [call for call in calls if call.startswith("nox ")] == [
        f"nox -s {session} [policy absent]" for session in ("tests", "repro", "e2e", "lint")
    ]
    assert not left


@pytest.mark.parametrize("install", ["fail", "interrupt"])
def test_the_policy_goes_when_the_install_fails_or_is_interrupted(sandbox: Path, install: str) -> None:
    status, calls, left = run_ci(sandbox, install)
    assert status == (100 if install == "fail" else 143)
    assert not any(call.startswith("nox ") for call in calls)
    assert not left


def test_a_policy_that_was_there_stays(sandbox: Path) -> None:
    status, _, left = run_ci(sandbox, existing_policy=True)
    assert status == 0
    assert left
    assert (sandbox / "sbin" / "policy-rc.d").read_text() == "#!/bin/sh\nexit 0\n"
