"""The Galera members' TLS: a CA and one member certificate, made from derived bytes.

Galera replication (4567), IST (4568) and SST (4444, xtrabackup through socat) are
encrypted with these; each member trusts the CA. The keys are derived scalars on P-256,
the signatures deterministic (RFC 6979) and the validity fixed, so the same master key
gives byte-identical PEMs. The CA's key signs once, here, at build time, and never
reaches the cluster. All members share one certificate: they share one Secret anyway
(a StatefulSet's pods have one template), so separate certificates would not keep a
member's key from the others.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass

# The order of P-256's group: a derived scalar is reduced into [1, n-1].
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC)
CA_NAME = "meshseed Galera CA"
MEMBER_NAME = "meshseed Galera member"


@dataclass(frozen=True)
class GaleraTLS:
    ca_pem: str
    certificate_pem: str
    key_pem: str


def galera_tls(ca_seed: bytes, member_seed: bytes, names: list[str]) -> GaleraTLS:
    """The CA certificate, and the members' certificate (for `names`) and key."""
    # Loaded here, not with the module: x509 costs every command start-up ~60 ms.
    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415

    def key_of(seed: bytes) -> ec.EllipticCurvePrivateKey:
        return ec.derive_private_key(int.from_bytes(seed, "big") % (_P256_ORDER - 1) + 1, ec.SECP256R1())

    def serial_of(key: ec.EllipticCurvePrivateKey) -> int:
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return int.from_bytes(hashlib.sha256(public).digest()[:16], "big") >> 1

    def name_of(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    ca_key, member_key = key_of(ca_seed), key_of(member_seed)
    ca = (
        x509.CertificateBuilder()
        .subject_name(name_of(CA_NAME))
        .issuer_name(name_of(CA_NAME))
        .public_key(ca_key.public_key())
        .serial_number(serial_of(ca_key))
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    member = (
        x509.CertificateBuilder()
        .subject_name(name_of(MEMBER_NAME))
        .issuer_name(name_of(CA_NAME))
        .public_key(member_key.public_key())
        .serial_number(serial_of(member_key))
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # Every member is a server to some and a client to others.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(ca_key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    pem = serialization.Encoding.PEM
    return GaleraTLS(
        ca_pem=ca.public_bytes(pem).decode(),
        certificate_pem=member.public_bytes(pem).decode(),
        key_pem=member_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )
