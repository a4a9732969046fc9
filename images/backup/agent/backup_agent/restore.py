"""Restore a verified snapshot into empty databases, exactly as it was.

Documents go back with `_bulk_docs` and `new_edits=false`, so every leaf revision keeps
its id and history (conflicts stay conflicts, deletions stay deleted); attachments go
back inline with the revision that holds them; `_security` last.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backup_agent.couch import Couch, CouchError, db_path
from backup_agent.snapshot import SnapshotError, verify

# Bytes of JSON per _bulk_docs request; a larger single document goes alone.
BATCH_BYTES = 4 << 20


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
        restore_database(couch, snapshot, entry)
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


def _documents(snapshot: Path, entry: dict[str, Any]) -> Iterator[dict[str, Any]]:
    with gzip.open(snapshot / entry["file"], "rb") as lines:
        for line in lines:
            document = json.loads(line)
            for attachment in document.get("_attachments", {}).values():
                data = (snapshot / attachment.pop("file")).read_bytes()
                attachment.pop("length", None)
                attachment["data"] = base64.b64encode(data).decode()
            yield document


def _batches(documents: Iterator[dict[str, Any]]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for document in documents:
        encoded = json.dumps(document, separators=(",", ":")).encode()
        if batch and size + len(encoded) > BATCH_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(encoded)
        size += len(encoded)
    if batch:
        yield batch


def restore_database(couch: Couch, snapshot: Path, entry: dict[str, Any]) -> None:
    name = entry["name"]
    for batch in _batches(_documents(snapshot, entry)):
        body = b'{"new_edits":false,"docs":[' + b",".join(batch) + b"]}"
        answer = couch.json("POST", db_path(name, "_bulk_docs"), body=body) or []
        failed = [row for row in answer if "error" in row]
        if failed:
            raise CouchError(f"{name}: {len(failed)} documents were refused, e.g. {failed[0]}")
    if entry["security"]:
        couch.json("PUT", db_path(name, "_security"), payload=entry["security"])
