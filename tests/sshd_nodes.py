"""Real OpenSSH servers on 127.0.0.1 standing in for the example site's nodes, each with
the host key the node's seed installs (derived from the test master key).

The backup-pull, replace and apply tests all start theirs here: `running_sshd` starts
one, `client_config` writes the operator's ssh_config that sends a node's address to it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.secrets import SecretDeriver
from builder.ssh_host_keys import host_key
from tests.conftest import TEST_MASTER_KEY
from tests.integration.oci_fixtures import free_port
from tests.tools import require, unavailable

# The example site's nodes by their public addresses (site.yaml).
PUBLIC_ADDRESSES = {
    "edx1": "2001:db8:10::11",
    "edx2": "2001:db8:20::12",
    "edx3": "2001:db8:30::13",
    "vault": "2001:db8:40::14",
}


def keygen(path: Path) -> None:
    program = require("ssh-keygen", "openssh-client")
    subprocess.run([program, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def derived_host_key(node: str) -> str:
    """The example site's node's host key, as its seed installs it."""
    return host_key(SecretDeriver(TEST_MASTER_KEY, "campus"), node).private_openssh


def user_key(directory: Path) -> Path:
    """A fresh login key pair in `directory` (user_key, user_key.pub)."""
    directory.mkdir(parents=True, exist_ok=True)
    keygen(directory / "user_key")
    return directory / "user_key"


@dataclass(frozen=True)
class RunningSshd:
    port: int
    work: Path

    @property
    def host_key(self) -> Path:
        return self.work / "host_key"


@contextlib.contextmanager
def running_sshd(
    work: Path, node: str, login_key: Path, environment: Mapping[str, str] | None = None
) -> Iterator[RunningSshd]:
    """sshd on 127.0.0.1 presenting `node`'s derived host key, letting in `login_key` (any
    user, root included), with `environment` set in every session (PATH among it)."""
    program = require("sshd", "openssh-server")
    if os.geteuid() != 0:
        unavailable("sshd needs root to switch to the login user")
    work.mkdir(parents=True, exist_ok=True)
    (work / "host_key").write_text(derived_host_key(node))
    (work / "host_key").chmod(0o600)
    (work / "authorized_keys").write_text(Path(f"{login_key}.pub").read_text())
    port = free_port()
    settings = (
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host_key'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPidFile {work / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\n"
    )
    if environment:
        settings += "SetEnv " + " ".join(f"{name}={value}" for name, value in environment.items()) + "\n"
    (work / "sshd_config").write_text(settings)
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
        yield RunningSshd(port, work)
    finally:
        process.kill()
        process.wait()


def client_config(path: Path, ports: Mapping[str, int], login_key: Path) -> Path:
    """An operator's ssh_config sending each address in `ports` to its sshd, with settings
    that would accept any host key: what is tested must not rely on them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    known_hosts = path.parent / "known_hosts"
    known_hosts.write_text("")
    path.write_text(
        "".join(
            f"Host {address}\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {login_key}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  StrictHostKeyChecking no\n"
            for address, port in ports.items()
        )
    )
    return path
