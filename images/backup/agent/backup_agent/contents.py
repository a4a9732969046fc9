"""What restore reads from a snapshot, checked before it reads any of it.

A CouchDB snapshot's manifest names each database's file, and each document's attachments
name their own files (`{"file": "attachments/<sha256>"}`). Restore reads those and nothing
else, so `verify` checks that every one of them is a file the manifest lists (and so has
hashed) inside the snapshot: a snapshot that passes cannot make restore read, or send to
a server, any file outside it.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backup_agent import etcd
from backup_agent.snapshot import SnapshotError, check_files, member, read_manifest

# How a line of the snapshot's compact JSON shows a design document or attachments. Restore
# parses only the lines that hold one of these, and verify checks exactly those lines.
DESIGN_ID = b'"_id":"_design/'
ATTACHMENTS = b'"_attachments":'


def verify(snapshot: Path) -> dict[str, Any]:
    """The manifest, once every listed file has been re-hashed and every file restore would
    read is one of them; raises SnapshotError on any difference."""
    manifest = read_manifest(snapshot)
    check_files(snapshot, manifest)
    check_references(snapshot, manifest)
    if manifest.get("kind") == etcd.KIND:
        etcd.check_contents(snapshot, manifest)
    return manifest


def check_references(snapshot: Path, manifest: dict[str, Any]) -> None:
    """Every attachment file the databases' documents name is one of the snapshot's files."""
    for entry in manifest.get("databases", []):
        for number, line in enumerate(lines(snapshot, manifest, entry), start=1):
            if DESIGN_ID in line or ATTACHMENTS in line:
                for relative in attachment_files(parse(line, entry, number)):
                    member(snapshot, manifest, relative)


def lines(snapshot: Path, manifest: dict[str, Any], entry: dict[str, Any]) -> Iterator[bytes]:
    """The lines of one database's file, without their newlines."""
    path = member(snapshot, manifest, entry["file"])
    try:
        with gzip.open(path, "rb") as stream:
            for raw in stream:
                yield raw.rstrip(b"\n")
    except (OSError, EOFError, zlib.error) as error:
        raise SnapshotError(f"{path}: not a readable gzip file: {error}") from None


def parse(line: bytes, entry: dict[str, Any], number: int) -> dict[str, Any]:
    """One document; SnapshotError, naming the database file and line, if it is not one."""
    try:
        document = json.loads(line)
    except ValueError as error:
        raise SnapshotError(f"{entry['file']}:{number}: not a JSON document: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("_id"), str):
        raise SnapshotError(f"{entry['file']}:{number}: not a document (no _id)")
    attachments = document.get("_attachments", {})
    if not isinstance(attachments, dict) or not all(isinstance(a, dict) for a in attachments.values()):
        raise SnapshotError(f"{entry['file']}:{number}: _attachments: not an object of attachments")
    return document


def attachment_files(document: dict[str, Any]) -> list[object]:
    return [attachment.get("file") for attachment in document.get("_attachments", {}).values()]
