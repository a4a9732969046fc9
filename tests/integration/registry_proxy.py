"""A proxy in front of the real registry that adds what a plain local registry lacks:
Docker Hub's bearer-token challenge, 429/503 answers and a connection cut mid-blob.

Everything else is forwarded to the registry untouched, Range requests included, so the
client under test still talks to real distribution code.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

TOKEN = "test-token"
_FORWARDED = ("content-type", "docker-content-digest", "content-length", "content-range", "accept-ranges")


@dataclass
class Faults:
    require_token: bool = False
    # (path fragment, status) answered once each, in order, before forwarding.
    statuses: list[tuple[str, int]] = field(default_factory=list)
    # Blob digests whose first download is cut off half way.
    truncate_once: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    token_requests: list[str] = field(default_factory=list)
    # A token stops working after this many requests, as Docker Hub's expire after minutes.
    token_uses: int | None = None
    uses: int = 0


class _Handler(BaseHTTPRequestHandler):
    server: _ProxyServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _handle(self) -> None:
        faults = self.server.faults
        faults.log.append(f"{self.command} {self.path} range={self.headers.get('Range')}")
        current = f"{TOKEN}-{len(faults.token_requests)}"
        if self.path.startswith("/token"):
            faults.token_requests.append(self.path)
            faults.uses = 0
            self._reply(
                200,
                json.dumps({"token": f"{TOKEN}-{len(faults.token_requests)}"}).encode(),
                "application/json",
            )
            return
        expired = faults.token_uses is not None and faults.uses >= faults.token_uses
        if faults.require_token and (self.headers.get("Authorization") != f"Bearer {current}" or expired):
            scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
            realm = f"{scheme}://{self.server.server_address[0]}:{self.server.server_address[1]}/token"
            challenge = f'Bearer realm="{realm}",service="meshseed-test"'
            self._reply(
                401,
                b'{"errors":[{"code":"UNAUTHORIZED"}]}',
                "application/json",
                {"WWW-Authenticate": challenge},
            )
            return
        faults.uses += 1
        for index, (fragment, status) in enumerate(faults.statuses):
            if fragment in self.path:
                del faults.statuses[index]
                self._reply(status, b"try again", "text/plain", {"Retry-After": "0"})
                return
        self._forward()

    def _reply(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() in {"accept", "range"}}
        with httpx.stream(
            self.command, self.server.upstream + self.path, headers=headers, follow_redirects=True
        ) as up:
            self.send_response(up.status_code)
            for name in _FORWARDED:
                if name in up.headers:
                    self.send_header(name, up.headers[name])
            self.end_headers()
            if self.command == "HEAD":
                return
            digest = self.path.rsplit("/", 1)[-1]
            cut = "/blobs/" in self.path and digest in self.server.faults.truncate_once
            if cut:
                self.server.faults.truncate_once.discard(digest)
            sent = 0
            total = int(up.headers.get("content-length", "0"))
            for chunk in up.iter_bytes(65536):
                if cut and sent + len(chunk) > total // 2:
                    self.wfile.write(chunk[: total // 2 - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)
                sent += len(chunk)


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str, faults: Faults) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.faults = faults


@dataclass
class Proxy:
    url: str
    faults: Faults


def run_proxy(upstream: str, faults: Faults, tls: ssl.SSLContext | None = None) -> Iterator[Proxy]:
    """Serve on 127.0.0.1 at a free port (over TLS with `tls`) until the generator is closed."""
    server = _ProxyServer(upstream, faults)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, name="registry-proxy", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield Proxy(f"{'https' if tls else 'http'}://{host}:{port}", faults)
    finally:
        server.shutdown()
        server.server_close()
