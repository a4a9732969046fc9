"""Restore a verified snapshot into empty databases, exactly as it was.

Documents go back with `_bulk_docs` and `new_edits=false`, so every leaf revision keeps
its id and history (conflicts stay conflicts, deletions stay deleted); attachments go
back inline with the revision that holds them; `_security` last.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from backup_agent.contents import ATTACHMENTS, DESIGN_ID, lines, parse, verify
from backup_agent.couch import Couch, CouchError, db_path
from backup_agent.readahead import read_ahead
from backup_agent.snapshot import SnapshotError, member

# A _bulk_docs request holds up to BATCH_DOCS documents or BATCH_BYTES of JSON (a larger
# single document goes alone): servers take longer per document in much larger batches.
BATCH_DOCS = 2000
BATCH_BYTES = 1 << 20
# Requests in flight at once, and bodies encoded ahead of them: the server always has
# the next request in hand instead of waiting for us to answer, read and encode.
SENDERS = 2
AHEAD = 2


class NotEmptyError(Exception):
    """The target database holds documents, and --force was not given."""


def restore(couch: Couch, snapshot: Path, *, only: str | None = None, force: bool = False) -> list[str]:
    """Restore every database of `snapshot` (or just `only`); returns their names."""
    manifest = verify(snapshot)
    databases = [entry for entry in manifest["databases"] if only is None or entry["name"] == only]
    if not databases:
        raise SnapshotError(f"{snapshot} holds no database {only!r}")
    for entry in databases:
        _prepare(couch, entry["name"], force=force)
    for entry in databases:
        restore_database(couch, snapshot, manifest, entry)
    return [entry["name"] for entry in databases]


def _prepare(couch: Couch, name: str, *, force: bool) -> None:
    response = couch.request("GET", db_path(name))
    body = response.read()
    if response.status == 404:
        couch.json("PUT", db_path(name), ok=(201, 202, 412))
        return
    if response.status != 200:
        raise CouchError(f"GET {couch.url}{db_path(name)}: HTTP {response.status}: {body[:300]!r}")
    if force:
        return
    # A new server's system databases may already hold their design documents; anything
    # else means the target is in use.
    rows = couch.json("GET", db_path(name, "_all_docs"), params={"limit": 50})["rows"]
    info = json.loads(body)
    if [row for row in rows if not row["id"].startswith("_design/")] or info.get("doc_del_count", 0):
        raise NotEmptyError(f"{couch.url}{db_path(name)} is not empty; restore with --force to add to it")


def _documents(
    snapshot: Path, manifest: dict[str, Any], entry: dict[str, Any], design: list[bytes]
) -> Iterator[bytes]:
    """The snapshot's documents as JSON for `_bulk_docs`, except design documents, which
    are added to `design` to go back last: a design document's validate_doc_update would
    otherwise judge the revisions restored after it (and pouchdb-server's, seeing a second
    leaf of a document, drops that leaf's history). `design` is complete once this ends.

    Lines are already compact JSON; only those with attachments are rewritten.
    """
    for number, line in enumerate(lines(snapshot, manifest, entry), start=1):
        if DESIGN_ID in line or ATTACHMENTS in line:
            document = parse(line, entry, number)
            if document["_id"].startswith("_design/"):
                design.append(_with_attachments(snapshot, manifest, document))
                continue
            if ATTACHMENTS in line:
                yield _with_attachments(snapshot, manifest, document)
                continue
        yield line


def _with_attachments(snapshot: Path, manifest: dict[str, Any], document: dict[str, Any]) -> bytes:
    """`document` with its attachments' bytes inline, as `_bulk_docs` takes them; each read
    only from a file of the snapshot that its manifest lists."""
    for attachment in document.get("_attachments", {}).values():
        data = member(snapshot, manifest, attachment.pop("file", None)).read_bytes()
        attachment.pop("length", None)
        attachment["data"] = base64.b64encode(data).decode()
    return json.dumps(document, separators=(",", ":")).encode()


def _bodies(documents: Iterable[bytes]) -> Iterator[bytes]:
    """`_bulk_docs` request bodies of up to BATCH_DOCS documents or BATCH_BYTES (a larger
    single document goes alone)."""
    batch: list[bytes] = []
    size = 0
    for encoded in documents:
        if batch and (size + len(encoded) > BATCH_BYTES or len(batch) == BATCH_DOCS):
            yield _body(batch)
            batch, size = [], 0
        batch.append(encoded)
        size += len(encoded)
    if batch:
        yield _body(batch)


def _body(batch: list[bytes]) -> bytes:
    return b'{"new_edits":false,"docs":[' + b",".join(batch) + b"]}"


def restore_database(couch: Couch, snapshot: Path, manifest: dict[str, Any], entry: dict[str, Any]) -> None:
    name = entry["name"]
    design: list[bytes] = []
    _post_all(couch, name, _documents(snapshot, manifest, entry, design))
    _post_all(couch, name, design)
    if entry["security"]:
        couch.json("PUT", db_path(name, "_security"), payload=entry["security"])


def _post_all(couch: Couch, name: str, documents: Iterable[bytes]) -> None:
    """Send `documents` with `_bulk_docs`, SENDERS requests at a time, each on its own
    connection, while the next bodies are read and encoded; returns when all are stored.
    Order between requests does not matter: `new_edits=false` merges revision trees."""
    local = threading.local()
    connections: list[Couch] = []

    def post(body: bytes) -> None:
        if not hasattr(local, "couch"):
            local.couch = couch.clone()
            connections.append(local.couch)
        answer = local.couch.json("POST", db_path(name, "_bulk_docs"), body=body) or []
        failed = [row for row in answer if "error" in row]
        if failed:
            raise CouchError(f"{name}: {len(failed)} documents were refused, e.g. {failed[0]}")

    try:
        with ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix=f"restore {name}") as pool:
            in_flight: set[Future[None]] = set()
            for body in read_ahead(_bodies(documents), AHEAD, name=f"encode {name}"):
                if len(in_flight) == SENDERS:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                in_flight.add(pool.submit(post, body))
            for future in in_flight:
                future.result()
    finally:
        for connection in connections:
            connection.close()
