"""Dump every database of a CouchDB server into one snapshot, streaming.

Per database: the update sequence at the start, the `_security` object, and every
document's every leaf revision (conflicts and deletions included) with the revision
history `new_edits=false` needs, as gzipped NDJSON. Attachments are fetched as binary, one
chunk at a time, and stored once each under attachments/<sha256>. Memory holds one page of
the changes feed at a time, whatever the database's size.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

from backup_agent.couch import Couch, CouchError, db_path, doc_path
from backup_agent.readahead import read_ahead
from backup_agent.snapshot import SnapshotWriter, locked

# Rows per changes-feed request (ids and revisions: small), and documents per _bulk_get.
CHANGES_PAGE = 5000
PAGE = 500
# Pages read ahead of the writer: bounds memory at (1 + AHEAD) pages.
AHEAD = 1
# zlib's level 6 (its default) costs a third of level 9's time for about the same size.
GZIP_LEVEL = 6


def database_file(name: str) -> str:
    return f"databases/{quote(name, safe='')}.ndjson.gz"


def dump_server(couch: Couch, root: Path, now: dt.datetime, only: list[str] | None = None) -> Path:
    """Write a complete snapshot of the server (or of `only` those databases) under `root`."""
    with locked(root):
        writer = SnapshotWriter(root, now)
        names = only if only else couch.json("GET", "/_all_dbs")
        databases = [dump_database(couch, name, writer) for name in sorted(names)]
        return writer.commit(
            {
                "kind": "couchdb",
                "created": now.astimezone(dt.UTC).isoformat(),
                "source": couch.url,
                "databases": databases,
            }
        )


def dump_database(couch: Couch, name: str, writer: SnapshotWriter) -> dict[str, Any]:
    info = couch.json("GET", db_path(name))
    # Recorded before reading: every write acknowledged before this point is in the changes
    # feed read below, which runs to its end.
    start_seq = info["update_seq"]
    security = couch.json("GET", db_path(name, "_security")) or {}
    counts = {"docs": 0, "revisions": 0, "deleted": 0, "attachments": 0}
    relative = database_file(name)
    with (
        writer.create(relative) as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=GZIP_LEVEL) as out,
    ):
        for results, documents in _prefetched(couch, name):
            for document in documents:
                _store_attachments(couch, name, document, writer, counts)
                counts["revisions"] += 1
                counts["deleted"] += bool(document.get("_deleted"))
                out.write(json.dumps(document, separators=(",", ":"), sort_keys=True).encode() + b"\n")
            counts["docs"] += len(results)
    return {"name": name, "file": relative, "update_seq": start_seq, "security": security, **counts}


def _pages(couch: Couch, name: str) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """The changes feed from the start to its end, PAGE rows at a time, with their leaves."""
    since: Any = 0
    while True:
        page = couch.json(
            "GET",
            db_path(name, "_changes"),
            params={"style": "all_docs", "include_docs": "true", "since": since, "limit": CHANGES_PAGE},
        )
        results = page["results"]
        for start in range(0, len(results), PAGE):
            chunk = results[start : start + PAGE]
            yield chunk, _leaves(couch, name, chunk)
        if len(results) < CHANGES_PAGE or page["last_seq"] == since:
            return
        since = page["last_seq"]


def _prefetched(couch: Couch, name: str) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """`_pages`, read on a second connection one page ahead, so that the server works on the
    next page while this one is written. At most AHEAD pages wait in memory."""
    reader = couch.clone()
    try:
        yield from read_ahead(_pages(reader, name), AHEAD, name=f"read {name}")
    finally:
        reader.close()


def _leaves(couch: Couch, name: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every leaf revision of the page's documents with its history, attachments as stubs.

    A document whose one leaf is its first revision came with the feed; its history is that
    revision alone, which `_rev` already says. The rest are read with `_bulk_get` and carry
    `_revisions`. There, a document with one live
    leaf is asked for by id alone, which servers answer faster than by revision. A document
    or revision that is gone by the time it is asked for (deleted, or a conflict resolved
    and compacted away) is skipped: the write that removed it moved the document further
    along the feed, which is read to its end, so its newer state is saved there.
    """
    documents: list[dict[str, Any]] = []
    wanted: list[dict[str, str]] = []
    for row in results:
        if first := _first_revision(row):
            documents.append(first)
        elif len(row["changes"]) == 1 and not row.get("deleted"):
            wanted.append({"id": row["id"]})
        else:
            wanted += [{"id": row["id"], "rev": change["rev"]} for change in row["changes"]]
    if not wanted:
        return documents
    answer = couch.json("POST", db_path(name, "_bulk_get"), params={"revs": "true"}, payload={"docs": wanted})
    for result in answer["results"]:
        for entry in result["docs"]:
            if "ok" in entry:
                documents.append(entry["ok"])
            elif entry.get("error", {}).get("error") != "not_found":
                raise CouchError(f"{name}: could not read {result['id']}: {entry.get('error')}")
    return documents


def _first_revision(row: dict[str, Any]) -> dict[str, Any] | None:
    """The feed's copy of a live document whose only revision is generation 1; None for
    anything that needs `_bulk_get`. It goes without `_revisions`: `new_edits=false` takes
    a lone `_rev` as a one-revision history, the same tree, and servers store it faster."""
    document: dict[str, Any] | None = row.get("doc")
    if not document or row.get("deleted") or len(row["changes"]) != 1:
        return None
    revision = row["changes"][0]["rev"]
    if document.get("_rev") != revision or not revision.startswith("1-"):
        return None
    return document


def _store_attachments(
    couch: Couch, name: str, document: dict[str, Any], writer: SnapshotWriter, counts: dict[str, int]
) -> None:
    """Replace each attachment's stub by a reference to its bytes, fetched as binary."""
    for attachment, meta in sorted(document.get("_attachments", {}).items()):
        chunks = couch.stream(doc_path(name, document["_id"], attachment), params={"rev": document["_rev"]})
        relative = writer.store_blob("attachments", chunks)
        document["_attachments"][attachment] = {
            "content_type": meta.get("content_type", "application/octet-stream"),
            "length": meta.get("length"),
            "file": relative,
        }
        counts["attachments"] += 1
