"""cosign key pairs: an ECDSA P-256 key as PKCS#8, encrypted the way cosign encrypts it.

cosign.key is a PEM block "ENCRYPTED SIGSTORE PRIVATE KEY" (older cosign wrote
"ENCRYPTED COSIGN PRIVATE KEY") around a JSON envelope: scrypt (N=65536, r=8, p=1) turns
the password and a random salt into a 32-byte key, and NaCl's secretbox
(XSalsa20-Poly1305) seals the PKCS#8 DER with it. cosign.pub is the PKIX public key.
`cryptography` has scrypt but not XSalsa20, so the box comes from PyNaCl.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.secret
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from builder.errors import ExitStatus, MeshseedError

PASSWORD_ENV = "COSIGN_PASSWORD"
PEM_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
SCRYPT = {"N": 65536, "r": 8, "p": 1}
SALT_SIZE = 32


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public_pem: bytes


def _pem(kind: str, der: bytes) -> bytes:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----"]) + "\n").encode()


def _unpem(data: bytes, origin: str) -> bytes:
    text = data.decode("ascii", errors="replace").strip().splitlines()
    if not text or not text[0].startswith("-----BEGIN ") or not text[-1].startswith("-----END "):
        raise MeshseedError(f"{origin}: not a PEM file", status=ExitStatus.BAD_INPUT)
    kind = text[0].removeprefix("-----BEGIN ").removesuffix("-----")
    if kind not in PEM_TYPES:
        raise MeshseedError(
            f"{origin}: holds a {kind!r}, not an encrypted cosign key", status=ExitStatus.BAD_INPUT
        )
    try:
        return base64.b64decode("".join(text[1:-1]), validate=True)
    except binascii.Error:
        raise MeshseedError(
            f"{origin}: damaged (its base64 does not decode)", status=ExitStatus.BAD_INPUT
        ) from None


def _box_key(password: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=SCRYPT["N"], r=SCRYPT["r"], p=SCRYPT["p"]).derive(password.encode())


def generate(password: str) -> KeyPair:
    """A new P-256 key pair, the private half sealed with `password` as cosign does."""
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(nacl.secret.SecretBox.NONCE_SIZE)
    sealed = nacl.secret.SecretBox(_box_key(password, salt)).encrypt(der, nonce).ciphertext
    envelope = {
        "kdf": {"name": "scrypt", "params": SCRYPT, "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return KeyPair(_pem(PEM_TYPES[0], json.dumps(envelope, separators=(",", ":")).encode()), public)


def load_private_key(data: bytes, password: str, origin: str) -> ec.EllipticCurvePrivateKey:
    """The key in a cosign.key; a clear error for a damaged file, a wrong password or type."""
    try:
        envelope = json.loads(_unpem(data, origin))
        kdf, cipher = envelope["kdf"], envelope["cipher"]
        if kdf["name"] != "scrypt" or cipher["name"] != "nacl/secretbox":
            raise MeshseedError(
                f"{origin}: sealed with {kdf['name']}/{cipher['name']}, not scrypt/nacl/secretbox"
            )
        params = kdf["params"]
        box_key = Scrypt(
            salt=base64.b64decode(kdf["salt"]), length=32, n=params["N"], r=params["r"], p=params["p"]
        ).derive(password.encode())
        nonce, sealed = base64.b64decode(cipher["nonce"]), base64.b64decode(envelope["ciphertext"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise MeshseedError(
            f"{origin}: damaged (not a cosign key envelope)", status=ExitStatus.BAD_INPUT
        ) from None
    try:
        der = nacl.secret.SecretBox(box_key).decrypt(sealed, nonce)
    except (nacl.exceptions.CryptoError, ValueError):
        raise MeshseedError(
            f"{origin}: wrong password (or a damaged key)",
            hint=f"set {PASSWORD_ENV}",
            status=ExitStatus.BAD_INPUT,
        ) from None
    try:
        key = serialization.load_der_private_key(der, password=None)
    except ValueError:
        raise MeshseedError(
            f"{origin}: damaged (the sealed key is not PKCS#8)", status=ExitStatus.BAD_INPUT
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        kind = type(key).__name__.removeprefix("_")
        raise MeshseedError(
            f"{origin}: holds a {kind}; cosign keys here are ECDSA P-256", status=ExitStatus.BAD_INPUT
        )
    return key


def password_from(environ: Mapping[str, str]) -> str:
    if PASSWORD_ENV not in environ:
        raise MeshseedError(
            f"{PASSWORD_ENV} is not set",
            hint="export the key's password (an empty one is allowed)",
            status=ExitStatus.BAD_INPUT,
        )
    return environ[PASSWORD_ENV]


def write_key_pair(directory: Path, pair: KeyPair) -> tuple[Path, Path]:
    """cosign.key (0600) and cosign.pub; never over existing files."""
    private, public = directory / "cosign.key", directory / "cosign.pub"
    for path in (private, public):
        if path.exists():
            raise MeshseedError(f"{path} exists; move it away first", status=ExitStatus.BAD_INPUT)
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pair.private_pem)
    public.write_bytes(pair.public_pem)
    return private, public
