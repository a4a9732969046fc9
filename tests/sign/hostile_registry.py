"""A hostile registry, token service or upload sink, as a process of its own on a loopback
address; standard library only, so it runs as `python hostile_registry.py ...`.

Every request it receives is appended to --log as one JSON line (method, path, headers,
body), so a test can show exactly what reached it. It prints its port, then serves:

- `basic`: /v2/ asks for HTTP Basic; with an Authorization header, manifests are unknown
  (404), uploads start with a 202 whose Location is --location, blobs are absent (404).
- `bearer`: the same, but the challenge is a Bearer one pointing at --realm; its own
  /token hands out a token.
- `sink`: takes whatever comes (an upload's PATCH or PUT); with --challenge it answers
  a request without credentials with a Basic challenge, to tempt a client into sending them.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def handler(options: argparse.Namespace) -> type[BaseHTTPRequestHandler]:
    log = Path(options.log)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            record = {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": body.decode("latin-1"),
            }
            with log.open("a") as stream:
                stream.write(json.dumps(record) + "\n")
            authorized = "Authorization" in self.headers
            if options.mode == "sink":
                if options.challenge and not authorized:
                    self._answer(401, {"WWW-Authenticate": 'Basic realm="sink"'})
                elif self.command == "PUT":
                    self._answer(201)
                else:
                    self._answer(202, {"Location": self.path, "Range": f"0-{max(length - 1, 0)}"})
                return
            if self.path.startswith("/token"):
                self._answer(200, {"Content-Type": "application/json"}, b'{"token": "hostile-token"}')
                return
            if not authorized:
                challenge = (
                    'Basic realm="hostile"'
                    if options.mode == "basic"
                    else f'Bearer realm="{options.realm}",service="hostile"'
                )
                self._answer(401, {"WWW-Authenticate": challenge})
            elif self.command == "POST" and "/blobs/uploads/" in self.path:
                self._answer(202, {"Location": options.location, "Range": "0-0"})
            else:
                self._answer(404, {"Content-Type": "application/json"}, b'{"errors": []}')

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _handle  # noqa: N815

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--mode", choices=["basic", "bearer", "sink"], required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--realm", default="")
    parser.add_argument("--location", default="")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--challenge", action="store_true")
    options = parser.parse_args()
    server = ThreadingHTTPServer((options.bind, 0), handler(options))
    server.daemon_threads = True
    # "{port}" in --realm or --location is this server's own port, known only now.
    port = str(server.server_address[1])
    options.realm, options.location = (
        text.replace("{port}", port) for text in (options.realm, options.location)
    )
    if options.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*options.tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


if __name__ == "__main__":
    main()
