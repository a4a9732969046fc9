"""Each node's SSH host key, derived: the seed installs it, known-hosts lists it, and
OpenSSH's own tools read it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from builder.secrets import SecretDeriver
from builder.ssh_host_keys import host_key
from tests.conftest import EXAMPLE_SITE, TEST_MASTER_KEY
from tests.integration.cli import meshseed
from tests.pinned import write_test_lock
from tests.tools import require


def test_the_key_is_openssh_s_own_format_and_the_same_every_time(tmp_path: Path) -> None:
    keygen = require("ssh-keygen", "openssh-client")
    deriver = SecretDeriver(TEST_MASTER_KEY, "campus")
    key = host_key(deriver, "vault")
    assert key == host_key(deriver, "vault")
    assert key != host_key(deriver, "edx1")
    assert key != host_key(SecretDeriver(bytes(reversed(TEST_MASTER_KEY)), "campus"), "vault")
    path = tmp_path / "host_key"
    path.write_text(key.private_openssh)
    path.chmod(0o600)
    # ssh-keygen reads the private key and derives the same public key from it.
    public = subprocess.run([keygen, "-y", "-f", str(path)], capture_output=True, text=True, check=True)
    assert public.stdout.split()[:2] == key.public.split()


def test_seeds_install_the_key_known_hosts_lists(tmp_path: Path, master_key_file: Path) -> None:
    shutil.copy(EXAMPLE_SITE, tmp_path / "site.yaml")
    write_test_lock(tmp_path)
    built = meshseed("build", cwd=tmp_path, master_key=master_key_file)
    assert built.returncode == 0, built.stderr
    listed = meshseed("known-hosts", cwd=tmp_path, master_key=master_key_file)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[-1]: line.split() for line in listed.stdout.splitlines()}
    nodes = {node["name"]: node for node in yaml.safe_load((tmp_path / "site.yaml").read_text())["nodes"]}
    assert sorted(lines) == sorted(nodes)
    for name, (names, kind, blob, _) in lines.items():
        data = yaml.safe_load((tmp_path / "dist" / "nodes" / name / "user-data").read_text())
        assert data["ssh_keys"]["ed25519_public"] == f"{kind} {blob}"
        assert data["ssh_genkeytypes"] == ["ed25519"] and data["ssh_deletekeys"] is True
        public = nodes[name]["public_ipv6"].split("/")[0]
        assert names.split(",")[0] == public and f"{name}.campus.example.org" in names.split(",")
    # The private keys are in the seeds (mode 0600), never in what known-hosts prints.
    assert "PRIVATE KEY" not in listed.stdout
