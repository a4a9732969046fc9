"""blackbox-exporter and Alertmanager, run with the exact args and config the build
renders, in an IPv6-only network namespace.

The namespace stands in for the cluster around them: its /etc/hosts (ip netns exec
mounts /etc/netns/<name>/hosts) points the site's names, the SMTP relay's Service name
and the webhook's host at ::1, where the tests run a TLS server, an SMTP sink and a
webhook sink; SSL_CERT_FILE (which Go reads) makes a test CA the trusted root, as the
public ones are for the real names. The programs are Debian's: blackbox_exporter 0.23
(the pinned image is v0.27.0) and Alertmanager 0.25 (the image is v0.28.1); the config
keys used here exist in both.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.integration.generated import Documents, config, every, manifests, named
from tests.integration.netns import Link, link
from tests.tools import require

__all__ = ["link", "manifests"]  # fixtures
LMS = "learn.campus.example.org"
WEBHOOK_HOST = "deadman.example.net"
RELAY_HOST = "smtp.openedx.svc.cluster.local"
AM_PORT = 9093

# An HTTPS (or, with "plain", HTTP) server on [::1]:443 or :80; it answers 200 and records
# every request (path, then body) in a file.
SERVER = """
import http.server, socket, ssl, sys
port, log = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def _answer(self, body=b""):
        with open(log, "ab") as out:
            out.write(self.path.encode() + b"\\n" + body + b"\\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def do_GET(self):
        self._answer()
    def do_POST(self):
        self._answer(self.rfile.read(int(self.headers["Content-Length"])))
class Server(http.server.HTTPServer):
    address_family = socket.AF_INET6
server = Server(("::1", port), Handler)
if len(sys.argv) > 3:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""
# The smallest SMTP server that takes a message: each one is appended to a file.
SMTP_SINK = """
import socket, sys
port, log = int(sys.argv[1]), sys.argv[2]
listener = socket.create_server(("::1", port), family=socket.AF_INET6)
while True:
    conn, _ = listener.accept()
    reader = conn.makefile("rb")
    def say(line):
        conn.sendall(line.encode() + b"\\r\\n")
    say("220 sink ESMTP")
    envelope = []
    while True:
        line = reader.readline()
        if not line:
            break
        command = line.decode(errors="replace").strip()
        verb = command.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            say("250 sink")
        elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
            envelope.append(command)
            say("250 ok")
        elif verb == "DATA":
            say("354 go on")
            data = b""
            while True:
                chunk = reader.readline()
                if chunk in (b".\\r\\n", b".\\n", b""):
                    break
                data += chunk
            with open(log, "ab") as out:
                out.write("\\n".join(envelope).encode() + b"\\n" + data + b"\\n=====\\n")
            envelope = []
            say("250 queued")
        elif verb == "QUIT":
            say("221 bye")
            break
        else:
            say("502 no")
    conn.close()
"""


def _certificate(name: str, issuer: x509.Name, issuer_key: Any, key: Any, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def tls_files(root: Path, names: list[str]) -> tuple[Path, dict[str, Path]]:
    """A test CA (root/ca.pem) and, per name, a certificate+key file it signed."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshseed test CA")])
    ca = _certificate("meshseed test CA", ca_name, ca_key, ca_key, ca=True)
    (root / "ca.pem").write_bytes(_pem(ca))
    served = {}
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = _certificate(name, ca_name, ca_key, key, ca=False)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        served[name] = root / f"{name}.pem"
        served[name].write_bytes(_pem(leaf) + key_pem)
    return root / "ca.pem", served


@pytest.fixture
def hosts(link: Link) -> Iterator[Path]:
    """The server namespace's /etc/hosts: every name the programs use, at ::1."""
    directory = Path("/etc/netns") / link.server
    directory.mkdir(parents=True)
    names = [LMS, f"studio.{LMS.split('.', 1)[1]}", WEBHOOK_HOST, RELAY_HOST]
    (directory / "hosts").write_text("127.0.0.1 localhost\n::1 localhost " + " ".join(names) + "\n")
    try:
        yield directory / "hosts"
    finally:
        shutil.rmtree(directory)


def container_args(manifests: dict[str, Documents], workload: str) -> list[str]:
    (container,) = named(every(manifests), "Deployment", workload)["spec"]["template"]["spec"]["containers"]
    return [str(arg) for arg in container["args"]]


def local_args(args: list[str], paths: dict[str, Path]) -> list[str]:
    """The rendered args with the pod's mount points moved under the test's folder."""
    # A mount point is a whole path at the start of a flag's value.
    mounts = re.compile("(?<==)(" + "|".join(re.escape(m) for m in paths) + ")(?=/|$)")
    return [mounts.sub(lambda match: str(paths[match.group(0)]), arg) for arg in args]


def wait_for_file(path: Path, text: str, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text(errors="replace")):
            return content
        time.sleep(0.5)
    return path.read_text(errors="replace") if path.exists() else ""


def probe(link: Link, target: str) -> dict[str, float]:
    reply = link.http(9115, f"/probe?module=http_2xx&target={target}").decode()
    assert reply.startswith("HTTP/1.1 200"), reply[:300]
    # The body comes chunked: keep the lines that are samples.
    samples = re.findall(r"^([a-z_]+) (\S+)$", reply.split("\r\n\r\n", 1)[1], re.MULTILINE)
    return {name: float(value) for name, value in samples}


def start_blackbox(link: Link, manifests: dict[str, Documents], root: Path, *, trusted: bool) -> None:
    """blackbox-exporter as rendered, and the LMS over HTTPS (443) and plain HTTP (80);
    `trusted`: the LMS's certificate chains to a CA blackbox trusts."""
    blackbox = require("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    (root / "etc").mkdir()
    (root / "etc" / "blackbox.yml").write_text(config(manifests, "blackbox-config", "blackbox.yml"))
    ca, served = tls_files(root, [LMS])
    (root / "server.py").write_text(SERVER)
    link.start([sys.executable, root / "server.py", "443", root / "tls.log", served[LMS]], cwd=root)
    link.start([sys.executable, root / "server.py", "80", root / "plain.log"], cwd=root)
    args = local_args(container_args(manifests, "blackbox-exporter"), {"/etc/blackbox": root / "etc"})
    assert f"--config.file={root}/etc/blackbox.yml" in args
    # Without SSL_CERT_FILE, the test CA is trusted by nobody.
    link.start([blackbox, *args], cwd=root, env={"SSL_CERT_FILE": str(ca)} if trusted else {})
    assert link.http_until(9115, "/-/healthy").startswith(b"HTTP/1.1 200")


def test_blackbox_loads_its_config_and_probes_over_tls(
    link: Link, hosts: Path, manifests: dict[str, Documents], tmp_path: Path
) -> None:
    start_blackbox(link, manifests, tmp_path, trusted=True)
    good = probe(link, f"https://{LMS}/")
    assert good["probe_success"] == 1
    assert good["probe_ip_protocol"] == 6
    assert good["probe_ssl_earliest_cert_expiry"] > time.time() + 20 * 86400
    # Plain HTTP is a failure (fail_if_not_ssl), not a success without a certificate.
    assert probe(link, f"http://{LMS}/")["probe_success"] == 0


def test_blackbox_fails_a_certificate_that_does_not_verify(
    link: Link, hosts: Path, manifests: dict[str, Documents], tmp_path: Path
) -> None:
    start_blackbox(link, manifests, tmp_path, trusted=False)
    assert probe(link, f"https://{LMS}/")["probe_success"] == 0


def _alert(name: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, "cluster": "campus", **labels},
        "annotations": {"summary": f"{name} test"},
    }


def test_alertmanager_mails_the_operator_and_calls_the_webhook(
    link: Link, hosts: Path, manifests: dict[str, Documents], tmp_path: Path
) -> None:
    alertmanager = require("prometheus-alertmanager", "prometheus-alertmanager")
    secret = named(every(manifests), "Secret", "alertmanager-config")["stringData"]
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "alertmanager.yml").write_text(secret["alertmanager.yml"])
    ca, served = tls_files(tmp_path, [WEBHOOK_HOST])
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "smtp.py").write_text(SMTP_SINK)
    relay_port = int(yaml.safe_load(secret["alertmanager.yml"])["global"]["smtp_smarthost"].rsplit(":", 1)[1])
    link.start([sys.executable, tmp_path / "smtp.py", str(relay_port), tmp_path / "mail.log"], cwd=tmp_path)
    link.start(
        [sys.executable, tmp_path / "server.py", "443", tmp_path / "webhook.log", served[WEBHOOK_HOST]],
        cwd=tmp_path,
    )
    args = local_args(
        container_args(manifests, "alertmanager"),
        {"/etc/alertmanager": tmp_path / "etc", "/alertmanager": tmp_path / "data"},
    )
    link.start([alertmanager, *args], cwd=tmp_path, env={"SSL_CERT_FILE": str(ca)})
    assert link.http_until(AM_PORT, "/-/ready").startswith(b"HTTP/1.1 200")

    alerts = json.dumps(
        [_alert("NodeDown", node="edx1", severity="critical"), _alert("Watchdog", severity="none")]
    )
    request = (
        "POST /api/v2/alerts HTTP/1.1\\r\\nHost: alertmanager\\r\\nContent-Type: application/json\\r\\n"
        f"Content-Length: {len(alerts)}\\r\\nConnection: close\\r\\n\\r\\n{alerts}"
    )
    # link.probe sends its payload through Python's escapes: the \\r\\n above become CRLF.
    # Sent twice, as the two Prometheus replicas send every alert, with the same labels.
    assert link.probe(AM_PORT, request).startswith(b"HTTP/1.1 200")
    assert link.probe(AM_PORT, request).startswith(b"HTTP/1.1 200")

    # group_wait is 30 s; both alerts reach the operator's mailbox through the relay.
    mail = wait_for_file(tmp_path / "mail.log", "Watchdog", 90)
    assert "RCPT TO:<ops@campus.example.org>" in mail
    assert "MAIL FROM:<alertmanager@campus.example.org>" in mail
    assert "NodeDown" in mail and "Watchdog" in mail
    # ... and the webhook gets every alert, the Watchdog too (a dead man's switch).
    calls = wait_for_file(tmp_path / "webhook.log", "Watchdog", 90)
    assert "/ping/campus" in calls
    payloads = [json.loads(line) for line in calls.splitlines() if line.startswith("{")]
    assert {alert["labels"]["alertname"] for p in payloads for alert in p["alerts"]} == {
        "NodeDown",
        "Watchdog",
    }
    # Deduplicated: the alert both replicas sent reaches the operator once.
    assert [alert["labels"]["alertname"] for p in payloads for alert in p["alerts"]].count("NodeDown") == 1


def test_the_mail_relay_takes_mail_from_every_pod(manifests: dict[str, Documents]) -> None:
    """Tutor's exim relays only for RELAY_FROM_HOSTS, private IPv4 ranges by default; the
    pods (Alertmanager, the LMS) have IPv6 addresses from the cluster's pod network."""
    from builder.network import cluster_networks  # noqa: PLC0415

    (container,) = named(every(manifests), "Deployment", "smtp")["spec"]["template"]["spec"]["containers"]
    relay = {variable["name"]: variable.get("value") for variable in container["env"]}["RELAY_FROM_HOSTS"]
    assert relay == f"<; {cluster_networks('campus').pods} ; ::1"
