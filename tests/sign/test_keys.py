"""cosign key pairs: the format cosign reads, and clear errors for keys it would refuse."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import nacl.secret
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from builder.errors import MeshseedError
from builder.sign.keys import PEM_TYPES, _box_key, _pem, load_private_key
from tests.integration.cli import meshseed
from tests.sign.openssl import openssl_verifies


def generate(tmp_path: Path, key: Path, password: str = "correct horse") -> subprocess.CompletedProcess[str]:
    return meshseed(
        "keys", "generate", "--out", "keys", cwd=tmp_path, master_key=key, env={"COSIGN_PASSWORD": password}
    )


def envelope(path: Path) -> dict[str, object]:
    lines = path.read_text().strip().splitlines()
    assert lines[0] == "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert lines[-1] == "-----END ENCRYPTED SIGSTORE PRIVATE KEY-----"
    assert all(len(line) <= 64 for line in lines[1:-1])
    return dict(json.loads(base64.b64decode("".join(lines[1:-1]))))


def test_generate_writes_cosigns_envelope_and_a_pkix_public_key(
    tmp_path: Path, master_key_file: Path
) -> None:
    result = generate(tmp_path, master_key_file)
    assert result.returncode == 0, result.stderr
    private, public = tmp_path / "keys" / "cosign.key", tmp_path / "keys" / "cosign.pub"
    assert private.stat().st_mode & 0o777 == 0o600
    sealed = envelope(private)
    assert list(sealed) == ["kdf", "cipher", "ciphertext"]
    assert sealed["kdf"] == {
        "name": "scrypt",
        "params": {"N": 65536, "r": 8, "p": 1},
        "salt": sealed["kdf"]["salt"],
    }  # type: ignore[index]
    assert len(base64.b64decode(sealed["kdf"]["salt"])) == 32  # type: ignore[index]
    assert sealed["cipher"]["name"] == "nacl/secretbox"  # type: ignore[index]
    assert len(base64.b64decode(sealed["cipher"]["nonce"])) == 24  # type: ignore[index]
    key = load_private_key(private.read_bytes(), "correct horse", "cosign.key")
    pub = serialization.load_pem_public_key(public.read_bytes())
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    assert pub.public_numbers() == key.public_key().public_numbers()
    # A signature made with the key checks out with the public key in openssl, a separate implementation.
    message = b"SHA256SUMS would go here\n"
    assert openssl_verifies(public, message, key.sign(message, ec.ECDSA(hashes.SHA256())), tmp_path)
    assert not openssl_verifies(
        public, message + b".", key.sign(message, ec.ECDSA(hashes.SHA256())), tmp_path
    )


def test_keys_are_never_overwritten_and_need_a_password(tmp_path: Path, master_key_file: Path) -> None:
    assert generate(tmp_path, master_key_file).returncode == 0
    again = generate(tmp_path, master_key_file)
    assert again.returncode == 2 and "cosign.key exists" in again.stderr
    missing = meshseed(
        "keys",
        "generate",
        "--out",
        "other",
        cwd=tmp_path,
        master_key=master_key_file,
        env={"COSIGN_PASSWORD": ""},
    )
    assert missing.returncode == 0, missing.stderr  # an empty password is allowed, as cosign allows it
    assert load_private_key((tmp_path / "other" / "cosign.key").read_bytes(), "", "cosign.key")


def test_a_wrong_password_a_wrong_type_and_damage_are_named(tmp_path: Path, master_key_file: Path) -> None:
    assert generate(tmp_path, master_key_file).returncode == 0
    data = (tmp_path / "keys" / "cosign.key").read_bytes()
    with pytest.raises(MeshseedError, match=r"cosign\.key: wrong password"):
        load_private_key(data, "battery staple", "cosign.key")
    with pytest.raises(MeshseedError, match=r"cosign\.key: damaged"):
        load_private_key(data.replace(b"eyJ", b"eyK", 1), "correct horse", "cosign.key")
    with pytest.raises(MeshseedError, match="not an encrypted cosign key"):
        load_private_key((tmp_path / "keys" / "cosign.pub").read_bytes(), "correct horse", "cosign.pub")
    # An RSA key sealed the same way is refused by type.
    salt, nonce = b"s" * 32, b"n" * 24
    der = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    sealed = nacl.secret.SecretBox(_box_key("pw", salt)).encrypt(der, nonce).ciphertext
    body = {
        "kdf": {
            "name": "scrypt",
            "params": {"N": 65536, "r": 8, "p": 1},
            "salt": base64.b64encode(salt).decode(),
        },
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(sealed).decode(),
    }
    rsa_key = _pem(PEM_TYPES[0], json.dumps(body).encode())
    with pytest.raises(MeshseedError, match="holds a RSAPrivateKey; cosign keys here are ECDSA P-256"):
        load_private_key(rsa_key, "pw", "rsa.key")


def test_older_cosign_headers_are_accepted(tmp_path: Path, master_key_file: Path) -> None:
    assert generate(tmp_path, master_key_file).returncode == 0
    data = (tmp_path / "keys" / "cosign.key").read_bytes().replace(b"SIGSTORE", b"COSIGN")
    assert load_private_key(data, "correct horse", "cosign.key")
