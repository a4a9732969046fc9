"""A proxy that makes pouchdb-server's numeric sequences look like CouchDB 3's opaque strings.

Only the sequence format is faked: every request goes to the real server, and each
`update_seq`, `seq` and `last_seq` in its JSON answers becomes "<n>-g1AAAA<...>"; a
`since` the client sends back is turned into the number again.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import http.server
import json
import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

SEQUENCE_KEYS = frozenset({"update_seq", "seq", "last_seq"})


def opaque(number: int) -> str:
    return f"{number}-g1AAAA" + base64.urlsafe_b64encode(f"shard-{number}".encode()).decode().rstrip("=")


def numeric(value: str) -> str:
    match = re.match(r"^(\d+)(-|$)", value)
    return match.group(1) if match else value


def disguise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: opaque(item) if key in SEQUENCE_KEYS and isinstance(item, int) else disguise(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [disguise(item) for item in value]
    return value


@contextlib.contextmanager
def opaque_sequences(upstream: str) -> Iterator[str]:
    target = urlsplit(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            parts = urlsplit(self.path)
            query = urlencode([(k, numeric(v) if k == "since" else v) for k, v in parse_qsl(parts.query)])
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            connection.request(
                self.command, parts.path + (f"?{query}" if query else ""), body=body, headers=headers
            )
            response = connection.getresponse()
            data = response.read()
            # CouchDB answers JSON as text/plain to clients that do not ask for JSON.
            if response.getheader("Content-Type", "").startswith(("application/json", "text/plain")):
                with contextlib.suppress(ValueError):  # a text attachment, not an answer
                    data = json.dumps(disguise(json.loads(data))).encode()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            connection.close()

        do_GET = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815 - http.server dispatches on these names

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
