"""Backup rows of `nox -s bench`: the agent against couchbackup/couchrestore on one server.

Both tools back up the same pouchdb-server database (documents without attachments, which
couchbackup does not handle) and restore it into fresh servers. couchbackup gzips its
request bodies, which pouchdb-server cannot read, probes with an empty `_bulk_get`, which
pouchdb-server never answers, and stops reading changes on CouchDB's `pending` count,
which pouchdb-server leaves out (as it does `doc_del_count`, which couchrestore checks); so both
tools go through the same small proxy, which un-gzips bodies, answers the empty probe and
adds those counts as CouchDB gives them. A last row backs up about
1 GiB of attachments, to check that the agent's memory stays flat.
"""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from backup_agent import restore
from backup_agent.snapshot import read_manifest

from bench.measure import Row, timed
from tests.backup.couchdb_fixtures import AGENT, Server, start_pouchdb
from tests.backup.proxy import rewriting_proxy

DOCS = 20_000
BIG_ATTACHMENTS = 256  # of 4 MiB: 1 GiB
MIB = 1 << 20


def _ungzip(
    path: str, headers: dict[str, str], body: bytes | None
) -> tuple[str, dict[str, str], bytes | None]:
    if body is not None and headers.get("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    # Plain bodies both ways: the proxy passes answers through as they are.
    headers = {k: v for k, v in headers.items() if k not in ("Content-Encoding", "Accept-Encoding")}
    return path, headers, body


def _empty_bulk_get(method: str, path: str, body: bytes | None) -> bytes | None:
    probe = method == "POST" and path.split("?", maxsplit=1)[0].endswith("/_bulk_get")
    if probe and body is not None and not json.loads(body).get("docs"):
        return b'{"results":[]}'
    return None


def _with_counts(path: str, content_type: str, body: bytes) -> bytes:
    """CouchDB's `pending` on a changes page (0 once a page is not full) and `doc_del_count`
    of a database that has never been written to (0), which pouchdb-server leaves out."""
    parts = urlsplit(path)
    if not body or not content_type.startswith("application/json"):
        return body
    if parts.path.count("/") == 1 and parts.path != "/":
        info = json.loads(body)
        if isinstance(info, dict) and info.get("update_seq") == 0:
            info.setdefault("doc_del_count", 0)
        return json.dumps(info).encode()
    if not parts.path.endswith("/_changes"):
        return body
    if b'"pending"' in body:
        return body
    # Counting rows as `"changes":` keys, not by parsing, keeps the proxy's cost the same
    # whether or not the page carries documents.
    limit = dict(parse_qsl(parts.query)).get("limit")
    full = limit is not None and body.count(b'"changes":') >= int(limit)
    return body.rstrip()[:-1] + b',"pending":%d}' % (1 if full else 0)


def _fill_documents(server: Server, db: str) -> int:
    """DOCS documents of about 400 bytes; returns the bytes of JSON written."""
    server.call("PUT", f"/{db}")
    written = 0
    for start in range(0, DOCS, 2000):
        docs = [
            {"_id": f"doc-{n:07d}", "n": n, "text": "lorem ipsum " * 30} for n in range(start, start + 2000)
        ]
        written += sum(len(json.dumps(doc)) for doc in docs)
        server.call("POST", f"/{db}/_bulk_docs", {"docs": docs})
    return written


def _fill_attachments(server: Server, db: str) -> None:
    server.call("PUT", f"/{db}")
    block = bytes(range(256)) * (4 * MIB // 256)
    for number in range(BIG_ATTACHMENTS):
        request = urllib.request.Request(
            f"{server.url}/{db}/blob-{number:04d}/data.bin",
            data=block[number:] + block[:number],
            method="PUT",
            headers={"Content-Type": "application/octet-stream"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()


def _server_alone(snapshot: Path, server: Server) -> float:
    """Seconds pouchdb-server itself takes to store the agent's restore requests, sent
    pre-encoded on SENDERS connections: the floor under any client's restore time."""
    (entry,) = read_manifest(snapshot)["databases"]
    bodies = list(restore._bodies(restore._documents(snapshot, entry, [])))
    server.call("PUT", f"/{entry['name']}")
    path = f"/{entry['name']}/_bulk_docs"
    address = urlsplit(server.url)

    def send(share: list[bytes]) -> None:
        connection = http.client.HTTPConnection(address.hostname or "", address.port)
        for body in share:
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            connection.getresponse().read()
        connection.close()

    senders = [
        threading.Thread(target=send, args=(bodies[n :: restore.SENDERS],)) for n in range(restore.SENDERS)
    ]
    started = time.perf_counter()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    return time.perf_counter() - started


def backup_rows(base: Path) -> list[Row]:
    couchbackup, couchrestore = shutil.which("couchbackup"), shutil.which("couchrestore")
    if not (shutil.which("pouchdb-server") and couchbackup and couchrestore):
        print(
            "bench: skipping backup rows: needs pouchdb-server and @cloudant/couchbackup (npm)",
            file=sys.stderr,
        )
        return []
    env = {"PYTHONPATH": str(AGENT), "PATH": "/usr/bin:/bin"}
    agent = [sys.executable, "-m", "backup_agent"]
    servers = [start_pouchdb(base / f"pouchdb-{n}") for n in range(5)]
    try:
        source, agent_target, tool_target, big, bare = servers
        data_bytes = _fill_documents(source, "bench")
        with (
            rewriting_proxy(
                source.url, request=_ungzip, answer=_empty_bulk_get, response=_with_counts
            ) as source_url,
            rewriting_proxy(
                agent_target.url, request=_ungzip, answer=_empty_bulk_get, response=_with_counts
            ) as agent_url,
            rewriting_proxy(
                tool_target.url, request=_ungzip, answer=_empty_bulk_get, response=_with_counts
            ) as tool_url,
        ):
            out = base / "agent-backups"
            agent_s, agent_rss, _ = timed(
                "agent backup",
                [*agent, "couchdb", "--url", source_url, "--out", str(out), "--db", "bench"],
                env=env,
            )
            dump = base / "couchbackup.txt"
            tool_s, _, text = timed("couchbackup", [couchbackup, "--url", source_url, "--db", "bench"])
            dump.write_bytes(text)
            (snapshot,) = out.glob("2*")
            restore_s, restore_rss, _ = timed(
                "agent restore", [*agent, "restore", "--from", str(snapshot), "--url", agent_url], env=env
            )
            tool_target.call("PUT", "/bench")  # couchrestore wants its target made first
            with tempfile.TemporaryFile() as stdin:
                stdin.write(text)
                stdin.seek(0)
                tool_restore_s, _, _ = timed(
                    "couchrestore", [couchrestore, "--url", tool_url, "--db", "bench"], stdin=stdin
                )
        floor_s = _server_alone(snapshot, bare)
        _fill_attachments(big, "blobs")
        big_out = base / "agent-big"
        big_s, big_rss, _ = timed(
            "agent backup, 1 GiB",
            [*agent, "couchdb", "--url", big.url, "--out", str(big_out), "--db", "blobs"],
            env=env,
        )
    finally:
        for server in servers:
            server.process.kill()
            server.process.wait()
    mb = data_bytes / 1e6

    def rate(seconds: float) -> str:
        return f"{DOCS / seconds:,.0f} docs/s, {mb / seconds:.1f} MB/s"

    # At least 1.5x couchbackup's throughput is at most 1/1.5 of its time.
    return [
        Row(
            f"backup {DOCS} docs ({rate(agent_s)})",
            agent_s,
            agent_rss,
            "agent",
            baseline=f"couchbackup ({rate(tool_s)})",
            baseline_seconds=tool_s,
            baseline_factor=0.667,
        ),
        Row(
            f"restore {DOCS} docs ({rate(restore_s)})",
            restore_s,
            restore_rss,
            "agent",
            baseline=f"couchrestore ({rate(tool_restore_s)})",
            baseline_seconds=tool_restore_s,
            baseline_factor=0.667,
        ),
        # pouchdb-server's own write time bounds every restore; when it is above the target,
        # no client can meet it on this server.
        Row(
            f"restore floor: pouchdb-server storing the same requests ({rate(floor_s)})",
            floor_s,
            0,
            "pouchdb-server alone",
            baseline=f"couchrestore ({rate(tool_restore_s)})",
            baseline_seconds=tool_restore_s,
            baseline_factor=0.667,
        ),
        Row(
            f"backup 1 GiB of attachments ({1024 / big_s:.0f} MiB/s)",
            big_s,
            big_rss,
            "agent",
            target_rss=200 * MIB,
        ),
    ]
