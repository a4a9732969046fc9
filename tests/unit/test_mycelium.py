"""Mycelium identities: x25519 public keys and overlay addresses."""

from __future__ import annotations

import dataclasses
import ipaddress

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from builder.mycelium import identity_from_secret, overlay_address, public_key_of


def test_vector_from_the_definition() -> None:
    identity = identity_from_secret(bytes(range(32)))
    assert identity.public_key.hex() == "8f40c5adb68f25624ae5b214ea767a6ec94d829d3d7b5e1ad1ba6f3e2138285f"
    assert str(identity.overlay_address) == "430:9364:d8d8:84a9:dd60:de78:c767:d361"
    assert str(identity.overlay_subnet) == "430:9364:d8d8:84a9::/64"


def test_x25519_rfc7748_vector() -> None:
    # Alice's key pair from RFC 7748 section 6.1.
    secret = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    assert public_key_of(secret).hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"


@given(st.binary(min_size=32, max_size=32))
def test_address_rule(public_key: bytes) -> None:
    address = overlay_address(public_key)
    packed, digest = address.packed, blake3.blake3(public_key).digest(length=16)
    assert address in ipaddress.IPv6Network("400::/7")
    assert packed[1:] == digest[1:]
    assert packed[0] == 0x04 + bin(digest[0]).count("1") % 2


def test_an_identity_cannot_be_changed() -> None:
    identity = identity_from_secret(bytes(32))
    with pytest.raises(dataclasses.FrozenInstanceError):
        identity.public_key = bytes(32)  # type: ignore[misc]
