"""Registry credentials go only where they belong, shown against hostile servers: each a
process of its own on a loopback address, 127.0.0.1 playing the registry and 127.0.0.2
and 127.0.0.3 playing other hosts, each logging every byte it is sent."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from builder.errors import MeshseedError
from builder.oci.credentials import HOST_ENV, PASSWORD_ENV, USER_ENV, credentials_for, credentials_lookup
from builder.oci.push import Blob, Pusher
from builder.oci.registry import Registries
from tests.integration.certs import make_tls
from tests.integration.cli import meshseed

USER, PASSWORD = "ci-bot", "only-for-the-named-registry"
LOGIN = {USER_ENV: USER, PASSWORD_ENV: PASSWORD}
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SERVER = Path(__file__).with_name("hostile_registry.py")


@dataclass
class Hostile:
    host: str  # address:port
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def saw_credentials(self) -> bool:
        """The password in any form, or any Authorization header at all."""
        text = self.log.read_text() if self.log.exists() else ""
        return (
            PASSWORD in text
            or BASIC.split()[1] in text
            or any("Authorization" in request["headers"] for request in self.requests())
        )


class Servers:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, address: str, mode: str, *extra: str) -> Hostile:
        log = self.work / f"{address}-{mode}-{len(self.processes)}.log"
        process = subprocess.Popen(
            [sys.executable, str(SERVER), "--bind", address, "--mode", mode, "--log", str(log), *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        process.stdout.close()
        assert port.isdecimal(), f"{SERVER} did not start"
        return Hostile(f"{address}:{port}", log)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def public_key(tmp_path: Path) -> Path:
    path = tmp_path / "cosign.pub"
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.write_bytes(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No login files of the machine's user: only the environment's pair is in play."""
    for name in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", HOST_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return {"HOME": str(tmp_path / "home")}


def verify(tmp_path: Path, key: Path, target: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return meshseed("verify", "--key", str(key), target, cwd=tmp_path, master_key=tmp_path / "none", env=env)


def test_the_environments_login_is_only_for_the_named_registry() -> None:
    assert credentials_for("ghcr.io", "ghcr.io", LOGIN) == (USER, PASSWORD)
    assert credentials_for("GHCR.io", "ghcr.io", LOGIN) == (USER, PASSWORD)
    assert credentials_for("evil.example", "ghcr.io", LOGIN) is None
    assert credentials_for("evil.example", None, LOGIN) is None
    assert credentials_for("quay.io", None, {**LOGIN, HOST_ENV: "quay.io"}) == (USER, PASSWORD)
    assert credentials_for("quay.io", "ghcr.io", {**LOGIN, HOST_ENV: "quay.io"}) == (USER, PASSWORD)


def test_verify_of_another_host_gets_no_login(
    servers: Servers, tmp_path: Path, public_key: Path, home: dict[str, str]
) -> None:
    other = servers.start("127.0.0.2", "basic")
    result = verify(tmp_path, public_key, f"{other.host}/app:1.0", {**home, **LOGIN})
    assert result.returncode == 1
    assert "app needs credentials" in result.stderr
    assert other.requests() and not other.saw_credentials()
    # Named in $MESHSEED_REGISTRY_HOST, the same host is logged in to.
    named = servers.start("127.0.0.2", "basic")
    result = verify(tmp_path, public_key, f"{named.host}/app:1.0", {**home, **LOGIN, HOST_ENV: named.host})
    assert result.returncode == 1
    assert [r["headers"].get("Authorization") for r in named.requests()] == [None, BASIC]
    assert PASSWORD not in result.stderr


def test_a_token_service_must_be_https(
    servers: Servers, tmp_path: Path, public_key: Path, home: dict[str, str]
) -> None:
    _, ca_file = make_tls(tmp_path)
    tls = ["--tls", str(tmp_path / "server.pem"), str(tmp_path / "server.key")]
    env = {**home, **LOGIN, "SSL_CERT_FILE": str(ca_file)}
    third = servers.start("127.0.0.3", "sink")
    registry = servers.start("127.0.0.1", "bearer", "--realm", f"http://{third.host}/token", *tls)
    result = verify(
        tmp_path, public_key, f"https://{registry.host}/app:1.0", {**env, HOST_ENV: registry.host}
    )
    assert result.returncode == 1
    assert f"refused the token service http://{third.host}/token: it is not https" in result.stderr
    assert third.requests() == []
    # An https token service is used, with the login and then the token.
    secure = servers.start("127.0.0.1", "bearer", "--realm", "https://127.0.0.1:{port}/token", *tls)
    result = verify(tmp_path, public_key, f"https://{secure.host}/app:1.0", {**env, HOST_ENV: secure.host})
    assert result.returncode == 1 and "the registry has no" in result.stderr
    asked = [(r["path"].split("?")[0], r["headers"].get("Authorization")) for r in secure.requests()]
    assert asked == [
        ("/v2/app/manifests/1.0", None),
        ("/token", BASIC),
        ("/v2/app/manifests/1.0", "Bearer hostile-token"),
    ]


def test_a_plain_registry_on_this_machine_may_hand_out_tokens_over_http(
    servers: Servers, tmp_path: Path, public_key: Path, home: dict[str, str]
) -> None:
    local = servers.start("127.0.0.1", "bearer", "--realm", "http://127.0.0.1:{port}/token")
    result = verify(tmp_path, public_key, f"{local.host}/app:1.0", {**home, **LOGIN, HOST_ENV: local.host})
    assert result.returncode == 1 and "the registry has no" in result.stderr
    assert [r["headers"].get("Authorization") for r in local.requests()][-1] == "Bearer hostile-token"


@pytest.fixture
def logged_in(home: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in LOGIN.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("mode", ["basic", "bearer"])
@pytest.mark.parametrize("third_host", ["sink", "challenging-sink"])
@pytest.mark.usefixtures("logged_in")
def test_an_upload_location_on_another_host_gets_no_authorization(
    servers: Servers, tmp_path: Path, mode: str, third_host: str
) -> None:
    third = servers.start("127.0.0.3", "sink", *(["--challenge"] if third_host == "challenging-sink" else []))
    registry = servers.start(
        "127.0.0.1",
        mode,
        "--realm",
        "http://127.0.0.1:{port}/token",
        "--location",
        f"http://{third.host}/upload/1",
    )
    blob_file = tmp_path / "blob"
    blob_file.write_bytes(b"layer bytes")
    blob = Blob("sha256:" + hashlib.sha256(b"layer bytes").hexdigest(), 11, blob_file)
    client = Registries(credentials=credentials_lookup(registry.host), retries=0).client(registry.host)
    pusher = Pusher(client)
    try:
        if third_host == "sink":
            pusher.push_blob("ci/app", blob)
            assert pusher.counts["uploaded"] == 1
        else:
            # Its challenge is not answered: the login is the registry's, not the upload host's.
            with pytest.raises(MeshseedError, match="HTTP 401"):
                pusher.push_blob("ci/app", blob)
    finally:
        client.close()
    assert [r["method"] for r in third.requests()] == ["PUT"]
    assert third.requests()[0]["body"] == "layer bytes"
    assert not third.saw_credentials()
    assert any(r["headers"].get("Authorization") for r in registry.requests())


@pytest.mark.parametrize("command", ["publish", "verify"])
def test_plain_http_to_another_machine_needs_insecure(
    tmp_path: Path, public_key: Path, home: dict[str, str], command: str
) -> None:
    def run(target: str, *extra: str) -> subprocess.CompletedProcess[str]:
        if command == "publish":
            argv = ["publish", "--registry", target, "--dist", str(tmp_path / "nothing"), *extra]
        else:
            argv = ["verify", "--key", str(public_key), target, *extra]
        return meshseed(*argv, cwd=tmp_path, master_key=tmp_path / "none", env=home)

    target = "http://registry.invalid/ci" + ("" if command == "publish" else "/app:1.0")
    refused = run(target)
    assert refused.returncode == 2
    assert refused.stderr.endswith(
        f"error: {target!r}: plain http to another machine shows everything on the way, logins included "
        "(use https://, or give --insecure if the network in between is yours)\n"
    )
    if command == "publish":
        # Allowed, and said; the missing build stops it before any connection.
        allowed = run(target, "--insecure")
        assert allowed.stderr.startswith(
            "warning: --insecure: talking plain http to http://registry.invalid\n"
        )
        assert "build.json: missing" in allowed.stderr
        local = run("http://127.0.0.1:9/ci")
        assert "warning: --insecure" not in local.stderr and "build.json: missing" in local.stderr
