"""A real OpenSSH server on 127.0.0.1 standing in for the example site's backup node."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sshd_nodes import PUBLIC_ADDRESSES, client_config, keygen, running_sshd, user_key

__all__ = ["Sshd", "keygen", "sshd"]


@dataclass
class Sshd:
    port: int
    client_config: Path  # an ssh_config that sends the backup node's address to this server
    user: str


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """sshd for the backup node's public address, as site.yaml gives it; it presents the
    node's derived host key, and `meshseed backup pull` accepts no other."""
    work = tmp_path / "sshd"
    key = user_key(work)
    with running_sshd(work, "vault", key) as server:
        config = client_config(work / "ssh_config", {PUBLIC_ADDRESSES["vault"]: server.port}, key)
        yield Sshd(server.port, config, "root")
