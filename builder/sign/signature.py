"""ECDSA P-256 over SHA-256, the signature scheme of cosign keys: DER, base64 in transit.

Signing is deterministic (RFC 6979): the same key and data give the same signature, so
signing a build again yields the same bytes and the registry is left as it was. Any
ECDSA verifier, cosign's included, accepts these signatures.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from builder.errors import ExitStatus, MeshseedError


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> str:
    algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    return base64.b64encode(key.sign(data, algorithm)).decode()


def is_valid(key: ec.EllipticCurvePublicKey, data: bytes, signature: str) -> bool:
    """Whether `signature` (base64 DER) signs `data`; False for anything malformed."""
    try:
        key.verify(base64.b64decode(signature, validate=True), data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def load_public_key(data: bytes, origin: str) -> ec.EllipticCurvePublicKey:
    """A cosign.pub (PEM SubjectPublicKeyInfo); a clear error for anything else."""
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise MeshseedError(f"{origin}: not a PEM public key", status=ExitStatus.BAD_INPUT) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = type(key).__name__.removeprefix("_")
        raise MeshseedError(
            f"{origin}: holds a {kind}; cosign keys here are ECDSA P-256", status=ExitStatus.BAD_INPUT
        )
    return key
