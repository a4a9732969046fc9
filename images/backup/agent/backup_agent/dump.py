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
from pathlib import Path
from typing import Any
from urllib.parse import quote

from backup_agent.couch import Couch, CouchError, db_path, doc_path
from backup_agent.snapshot import SnapshotWriter, locked

PAGE = 500


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
    with writer.create(relative) as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        since: Any = 0
        while True:
            page = couch.json(
                "GET", db_path(name, "_changes"), params={"style": "all_docs", "since": since, "limit": PAGE}
            )
            results = page["results"]
            for document in _leaves(couch, name, results):
                _store_attachments(couch, name, document, writer, counts)
                counts["revisions"] += 1
                counts["deleted"] += bool(document.get("_deleted"))
                out.write(json.dumps(document, separators=(",", ":"), sort_keys=True).encode() + b"\n")
            counts["docs"] += len(results)
            if len(results) < PAGE or page["last_seq"] == since:
                break
            since = page["last_seq"]
    return {"name": name, "file": relative, "update_seq": start_seq, "security": security, **counts}


def _leaves(couch: Couch, name: str, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every leaf revision of the page's documents, with `_revisions`, attachments as stubs."""
    wanted = [{"id": row["id"], "rev": change["rev"]} for row in results for change in row["changes"]]
    if not wanted:
        return []
    answer = couch.json("POST", db_path(name, "_bulk_get"), params={"revs": "true"}, payload={"docs": wanted})
    documents = []
    for result in answer["results"]:
        for entry in result["docs"]:
            if "ok" not in entry:
                raise CouchError(f"{name}: could not read {result['id']}: {entry.get('error')}")
            documents.append(entry["ok"])
    return documents


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
