"""Registries for the publishing tests: the Debian docker-registry over TLS (a CA made here)
with htpasswd authentication, a proxy that cuts an upload short, and raw edits that play
an attacker moving tags and swapping signatures. All on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.integration.certs import make_tls
from tests.integration.oci_fixtures import MANIFEST_ACCEPT, free_port
from tests.tools import require

USER, PASSWORD = "ci-bot", "registry password 4 tests"


@dataclass(frozen=True)
class SecureRegistry:
    host: str
    ca_file: Path


@contextlib.contextmanager
def secure_registry(work: Path) -> Iterator[SecureRegistry]:
    """docker-registry on 127.0.0.1 with TLS and htpasswd; ended by its PID afterwards."""
    program = require("docker-registry", "docker-registry")
    htpasswd = require("htpasswd", "apache2-utils")
    work.mkdir(parents=True, exist_ok=True)
    _, ca_file = make_tls(work)
    subprocess.run(
        [htpasswd, "-Bbc", str(work / "htpasswd"), USER, PASSWORD], check=True, capture_output=True
    )
    host = f"127.0.0.1:{free_port()}"
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "storage": {"filesystem": {"rootdirectory": str(work / "storage")}},
        "http": {
            "addr": host,
            "secret": "meshseed-test-only",
            "tls": {"certificate": str(work / "server.pem"), "key": str(work / "server.key")},
        },
        "auth": {"htpasswd": {"realm": "meshseed-test", "path": str(work / "htpasswd")}},
    }
    (work / "registry.yml").write_text(yaml.safe_dump(config))
    with (work / "registry.log").open("wb") as log:
        process = subprocess.Popen([program, "serve", str(work / "registry.yml")], stdout=log, stderr=log)
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"https://{host}/v2/", verify=context).status_code == 401:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError((work / "registry.log").read_text()) from None
                time.sleep(0.1)
        yield SecureRegistry(host, ca_file)
    finally:
        process.kill()
        process.wait()


@dataclass
class Cuts:
    """How the proxy breaks a push: the answers of the first `lost_answers` PATCHes are
    dropped with the connection (the registry did get the chunk), and after
    `refuse_after` PATCHes every request is refused, as when the network goes away."""

    lost_answers: int = 0
    refuse_after: int | None = None
    patches: int = 0
    log: list[str] = field(default_factory=list)


@contextlib.contextmanager
def cutting_proxy(upstream: str, cuts: Cuts) -> Iterator[str]:
    """A proxy to `upstream` (http://host:port); the registry builds its Location headers
    from the Host the proxy passes on, so uploads keep coming through the proxy."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {
                k: v for k, v in self.headers.items() if k.lower() not in ("content-length", "connection")
            }
            cuts.log.append(
                f"{self.command} {self.path.split('?')[0]} {self.headers.get('Content-Range', '')}"
            )
            if cuts.refuse_after is not None and cuts.patches >= cuts.refuse_after:
                cuts.log.append("refused")
                self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            answer = httpx.request(self.command, upstream + self.path, headers=headers, content=body)
            if self.command == "PATCH":
                cuts.patches += 1
                if cuts.lost_answers > 0:
                    cuts.lost_answers -= 1
                    cuts.log.append("answer lost")
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
            self.send_response(answer.status_code)
            for key, value in answer.headers.items():
                if key.lower() not in (
                    "content-length",
                    "transfer-encoding",
                    "connection",
                    "content-encoding",
                ):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(answer.content)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward  # noqa: N815

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class RawRegistry:
    """Plain distribution-API calls, independent of meshseed's client, for arranging
    attacks: pushing blobs and manifests and reading them back."""

    def __init__(self, base: str, repository: str) -> None:
        self.base = f"{base}/v2/{repository}"

    def manifest(self, reference: str) -> bytes:
        response = httpx.get(f"{self.base}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
        response.raise_for_status()
        return response.content

    def status(self, reference: str) -> int:
        return httpx.head(
            f"{self.base}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT}
        ).status_code

    def digest_of(self, reference: str) -> str:
        response = httpx.head(f"{self.base}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})
        response.raise_for_status()
        return response.headers["docker-content-digest"]

    def blob(self, digest: str) -> bytes:
        response = httpx.get(f"{self.base}/blobs/{digest}", follow_redirects=True)
        response.raise_for_status()
        return response.content

    def put_blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = httpx.post(f"{self.base}/blobs/uploads/")
        location = str(httpx.URL(self.base).join(started.headers["location"]))
        separator = "&" if "?" in location else "?"
        httpx.put(f"{location}{separator}digest={digest}", content=data).raise_for_status()
        return digest

    def put_manifest(self, reference: str, data: bytes) -> str:
        media_type = json.loads(data).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
        response = httpx.put(
            f"{self.base}/manifests/{reference}", content=data, headers={"Content-Type": media_type}
        )
        response.raise_for_status()
        return "sha256:" + hashlib.sha256(data).hexdigest()


def storage_snapshot(root: Path) -> dict[str, bytes]:
    """Every file under a registry's storage with its content, to compare before and after."""
    return {
        str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()
    }
