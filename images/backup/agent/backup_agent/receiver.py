"""`backup etcd-receive`: the backup node's end of the etcd snapshot transfer, over HTTP.

One request does anything: `PUT /etcd` with `Authorization: Bearer <token>`,
`X-Snapshot-Name`, `X-Snapshot-Sha256` and a Content-Length (no chunked bodies). The
answer is 201 with the stored snapshot's name, or 4xx with the reason in the body. One
request at a time: a snapshot holds the tree's lock while it is written, and a sender that
stalls for TIMEOUT seconds is cut off (its partial snapshot removed).

Plain HTTP inside the cluster network: between nodes it rides flannel's VXLAN over
Mycelium, which encrypts it; the NetworkPolicies let only the sender's pods in.
"""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import sys
from pathlib import Path

from backup_agent import etcd
from backup_agent.snapshot import write_metric

TIMEOUT = 300
PATH = "/etcd"


class Receiver(http.server.HTTPServer):
    def __init__(self, address: tuple[str, int], root: Path, token: str, metrics: Path | None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, Handler)
        self.root, self.token, self.metrics = root, token, metrics


class Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver
    timeout = TIMEOUT
    server_version = "meshseed-backup"

    def do_PUT(self) -> None:
        try:
            self._store()
        except etcd.RefusedError as refused:
            self._answer(refused.status, str(refused))
        except OSError as error:
            # A sender that went away or stalled, or a full disk: the partial snapshot is gone.
            print(f"backup: etcd: a snapshot was not stored: {error}", file=sys.stderr, flush=True)
            self.close_connection = True

    def _store(self) -> None:
        if self.path != PATH:
            raise etcd.RefusedError(404, f"only PUT {PATH}")
        if not etcd.authorized(self.headers.get("Authorization"), self.server.token):
            raise etcd.RefusedError(401, "a valid token is needed")
        if self.headers.get("Transfer-Encoding"):
            raise etcd.RefusedError(411, "send a Content-Length, not a chunked body")
        try:
            size = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise etcd.RefusedError(411, "a Content-Length is needed") from None
        name = self.headers.get("X-Snapshot-Name", "")
        sha256 = self.headers.get("X-Snapshot-Sha256", "")
        now = dt.datetime.now(dt.UTC)
        snapshot, taken = etcd.receive(
            self.server.root, name=name, sha256=sha256, size=size, body=self.rfile, now=now
        )
        if self.server.metrics:
            # When k3s took the newest snapshot here, not when it arrived: the alert is about
            # how old the cluster state we could restore is.
            write_metric(self.server.metrics, etcd.KIND, etcd.newest_taken(self.server.root) or taken)
        print(f"backup: stored {snapshot} ({name}, taken {taken.isoformat()})", flush=True)
        self._answer(201, snapshot.name)

    def _answer(self, status: int, text: str) -> None:
        if status >= 400:
            print(f"backup: etcd: refused a snapshot ({status}): {text}", file=sys.stderr, flush=True)
            # The body may not have been read: do not let it be taken for the next request.
            self.close_connection = True
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # Our own lines say what happened; the request lines would only repeat them.
        pass


def serve(address: str, port: int, root: Path, token: str, metrics: Path | None) -> None:
    with Receiver((address, port), root, token, metrics) as server:
        print(f"backup: receiving etcd snapshots on [{address}]:{server.server_address[1]}{PATH}", flush=True)
        server.serve_forever()
