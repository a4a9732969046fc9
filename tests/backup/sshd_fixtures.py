"""A real OpenSSH server on 127.0.0.1, with a temporary host key and user key."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.secrets import SecretDeriver
from builder.ssh_host_keys import host_key
from tests.conftest import TEST_MASTER_KEY
from tests.integration.oci_fixtures import free_port
from tests.tools import require, unavailable


@dataclass
class Sshd:
    port: int
    client_config: Path  # an ssh_config that sends `alias` to this server with the user key
    user: str


def keygen(path: Path) -> None:
    program = require("ssh-keygen", "openssh-client")
    subprocess.run([program, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """sshd for the backup node's public address, as site.yaml gives it."""
    program = require("sshd", "openssh-server")
    if os.geteuid() != 0:
        unavailable("sshd needs root to switch to the login user")
    work = tmp_path / "sshd"
    work.mkdir()
    # The example site's backup node (vault) presents its derived host key, as its seed
    # installs it; `meshseed backup pull` accepts no other.
    (work / "host_key").write_text(
        host_key(SecretDeriver(TEST_MASTER_KEY, "campus"), "vault").private_openssh
    )
    (work / "host_key").chmod(0o600)
    keygen(work / "user_key")
    (work / "authorized_keys").write_text((work / "user_key.pub").read_text())
    port = free_port()
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPidFile {work / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\n"
    )
    # An operator's own known_hosts, which would accept any key for the address: the pull
    # must not rely on it.
    (work / "known_hosts").write_text("")
    # The alias is the example site's backup node (vault); ssh connects to 127.0.0.1 instead.
    (work / "ssh_config").write_text(
        f"Host 2001:db8:40::14\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {work / 'user_key'}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {work / 'known_hosts'}\n  StrictHostKeyChecking no\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    with (work / "sshd.log").open("wb") as log:
        process = subprocess.Popen(
            [program, "-D", "-e", "-f", str(work / "sshd_config")], stdout=log, stderr=log
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    try:
        yield Sshd(port, work / "ssh_config", "root")
    finally:
        process.kill()
        process.wait()
