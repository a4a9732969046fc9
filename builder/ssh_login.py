"""Logging in to a node of the site over SSH: by its public or overlay address, accepting
its derived host key (`meshseed known-hosts`) and no other.

`meshseed backup pull`, `meshseed replace` and `meshseed apply` all reach nodes this way,
with the same --via, --user, --ssh-config and --ssh-option options.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.inventory import mycelium_identity
from builder.secrets import SecretDeriver
from builder.site import Node
from builder.tools.ssh import SshTarget

VIAS = ("public", "overlay")


@dataclass(frozen=True)
class Login:
    """How to reach a node: which of its addresses, as whom, with which ssh settings."""

    via: str  # "public" or "overlay"
    user: str
    config: Path | None = None
    options: tuple[str, ...] = ()


def address_of(deriver: SecretDeriver, node: Node, via: str) -> str:
    if via == "overlay":
        return str(mycelium_identity(deriver, node.name).overlay_address)
    return str(node.public_ipv6.ip)


# How long a shared connection outlives its last command, should closing it fail.
PERSIST_SECONDS = 60


@contextlib.contextmanager
def login_to(
    deriver: SecretDeriver, node: Node, login: Login, *, shared: bool = False
) -> Iterator[SshTarget]:
    """An ssh target for `node` that accepts its derived host key and no other, whatever
    ssh_config or known_hosts say. `shared`: its commands share one connection (ssh's
    ControlMaster), closed at the end, for a caller that runs many."""
    from builder.ssh_host_keys import pinned_host_key  # noqa: PLC0415 - loads cryptography

    with pinned_host_key(deriver, node.name) as pinned, contextlib.ExitStack() as stack:
        sharing: tuple[str, ...] = ()
        if shared:
            # A socket path must be short (108 bytes): a directory of its own in /tmp.
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="meshseed-ssh-", dir="/tmp"))
            sharing = (
                "ControlMaster=auto",
                f"ControlPath={directory}/master",
                f"ControlPersist={PERSIST_SECONDS}",
            )
        # The pinned options first: ssh takes the first value it sees of each, and -o
        # comes before -F's file.
        options = (*pinned, *sharing, *login.options)
        target = SshTarget(address_of(deriver, node, login.via), login.user, login.config, options)
        try:
            yield target
        finally:
            if shared:
                target.close_master()
