"""Mycelium node identities: an x25519 key pair and the overlay address it implies.

Mycelium (0.5 and later) derives a node's overlay address from its public key alone, so
the builder knows every address before any node boots.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import blake3
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

OVERLAY_SUBNET_PREFIX = 64


@dataclass(frozen=True)
class MyceliumIdentity:
    """The public half of a node's Mycelium identity."""

    public_key: bytes
    overlay_address: ipaddress.IPv6Address

    @property
    def overlay_subnet(self) -> ipaddress.IPv6Network:
        return ipaddress.IPv6Network(f"{self.overlay_address}/{OVERLAY_SUBNET_PREFIX}", strict=False)


def public_key_of(secret_key: bytes) -> bytes:
    """The x25519 public key for a 32-byte secret key."""
    return X25519PrivateKey.from_private_bytes(secret_key).public_key().public_bytes_raw()


def overlay_address(public_key: bytes) -> ipaddress.IPv6Address:
    """Mycelium's address rule: blake3(public key), 16 bytes, first byte 0x04 | parity.

    The first byte becomes 0x04 or 0x05, so every address lies in 400::/7, and its low
    bit is the parity of the bits of the hash's original first byte.
    """
    digest = bytearray(blake3.blake3(public_key).digest(length=16))
    digest[0] = 0x04 | (digest[0].bit_count() % 2)
    return ipaddress.IPv6Address(bytes(digest))


def identity_from_secret(secret_key: bytes) -> MyceliumIdentity:
    public_key = public_key_of(secret_key)
    return MyceliumIdentity(public_key, overlay_address(public_key))
