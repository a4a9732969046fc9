"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The registry, test images and containerd fixtures of the OCI tests, the local Debian
# archive of the own-image tests, and the CouchDB-API and SSH servers of the backup tests.
pytest_plugins = [
    "tests.integration.oci_fixtures",
    "tests.integration.debian_fixtures",
    "tests.backup.couchdb_fixtures",
    "tests.backup.sshd_fixtures",
]

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_SITE = REPO / "site.yaml"

# A fixed, public test master key: bytes 0x00..0x1f. Never use it for a real site.
TEST_MASTER_KEY = bytes(range(32))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite tests/golden from the current output"
    )


def pytest_configure(config: pytest.Config) -> None:
    # With --update-golden the golden tests write what they compare against, so they cannot
    # fail; in CI that would pass any change to a render unseen.
    if config.getoption("--update-golden") and os.environ.get("CI") == "true":
        raise pytest.UsageError("--update-golden is refused under CI=true: it makes the golden tests pass")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture
def master_key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "master.key"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(TEST_MASTER_KEY)
    path.chmod(0o600)
    return path
