"""Each node's SSH host key, derived from the master key, so that it is known before the
machine first boots: seeds install it, `meshseed known-hosts` prints it, and
`meshseed backup pull` accepts no other.

OpenSSH keeps ed25519 private keys only in its own "openssh-key-v1" format, whose two
check integers ssh-keygen draws at random; here they come from the key, so the same
master key always writes the same bytes (PROTOCOL.key in OpenSSH's source describes the
format).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from builder.inventory import mycelium_identity
from builder.secrets import Purpose, SecretDeriver
from builder.site import Site

KEY_TYPE = b"ssh-ed25519"
MAGIC = b"openssh-key-v1\0"
# An unencrypted key pads its private section to whole blocks of 8.
BLOCK = 8
LINE = 70


@dataclass(frozen=True)
class HostKey:
    private_openssh: str
    public: str  # "ssh-ed25519 AAAA..."


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def host_key(deriver: SecretDeriver, node: str) -> HostKey:
    # cryptography loads only when a key is made, not at every command's start-up.
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: PLC0415

    seed = deriver.derive(Purpose.SSH_HOST_KEY, node).raw
    public_raw = (
        Ed25519PrivateKey.from_private_bytes(seed)
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    public_blob = _string(KEY_TYPE) + _string(public_raw)
    check = hashlib.sha256(b"meshseed/ssh-host-key-check/" + seed).digest()[:4]
    private = (
        check
        + check
        + _string(KEY_TYPE)
        + _string(public_raw)
        + _string(seed + public_raw)
        + _string(f"root@{node}".encode())
    )
    private += bytes(range(1, BLOCK - len(private) % BLOCK + 1)) if len(private) % BLOCK else b""
    body = (
        MAGIC
        + _string(b"none")
        + _string(b"none")
        + _string(b"")
        + struct.pack(">I", 1)
        + _string(public_blob)
        + _string(private)
    )
    encoded = base64.b64encode(body).decode()
    lines = [encoded[i : i + LINE] for i in range(0, len(encoded), LINE)]
    private_text = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    return HostKey(private_text, f"{KEY_TYPE.decode()} {base64.b64encode(public_blob).decode()}")


def known_hosts(site: Site, deriver: SecretDeriver) -> str:
    """A known_hosts file for every node, by the names it is reached by: its public and
    overlay addresses, its FQDN and its name."""
    lines = []
    for node in site.nodes:
        overlay = mycelium_identity(deriver, node.name).overlay_address
        names = [str(node.public_ipv6.ip), str(overlay), f"{node.name}.{site.domain}", node.name]
        lines.append(f"{','.join(names)} {host_key(deriver, node.name).public} {node.name}\n")
    return "".join(lines)


@contextlib.contextmanager
def pinned_host_key(deriver: SecretDeriver, node: str) -> Iterator[tuple[str, ...]]:
    """ssh -o options that accept `node`'s derived host key alone, under the alias of its
    name (so a host name, address or ssh_config HostName changes nothing), from a
    known_hosts file that lasts as long as the block."""
    with tempfile.TemporaryDirectory(prefix="meshseed-known-hosts-") as directory:
        path = Path(directory) / "known_hosts"
        path.write_text(f"{node} {host_key(deriver, node).public}\n")
        yield (
            f"UserKnownHostsFile={path}",
            "GlobalKnownHostsFile=/dev/null",
            f"HostKeyAlias={node}",
            "StrictHostKeyChecking=yes",
            "HostKeyAlgorithms=ssh-ed25519",
        )
