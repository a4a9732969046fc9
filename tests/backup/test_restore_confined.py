"""`backup restore` reads only files inside the snapshot (issue 18, item 6).

Each snapshot here is written by the agent's own writer, so its manifest is consistent,
but its documents or its manifest name a file outside it. Restoring one into a real
CouchDB-API server (pouchdb-server on 127.0.0.1) must send none of that file, and `backup
verify` must refuse the snapshot first.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.backup.couchdb_fixtures import AGENT, Server, agent

sys.path.insert(0, str(AGENT))
from backup_agent.snapshot import SnapshotWriter

SECRET = b"the operator's private file"


def lines(*documents: dict[str, Any]) -> bytes:
    return gzip.compress(b"".join(json.dumps(d, separators=(",", ":")).encode() + b"\n" for d in documents))


def with_attachment(file: str) -> dict[str, Any]:
    return {
        "_id": "doc",
        "_rev": "1-0123456789abcdef0123456789abcdef",
        "_attachments": {"x.txt": {"content_type": "text/plain", "length": len(SECRET), "file": file}},
    }


def hostile_snapshot(root: Path, case: str, outside: Path) -> Path:
    """A snapshot of database `campus` whose restore would read `outside` (or a file in it)."""
    writer = SnapshotWriter(root, dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    secret = outside / "secret.txt"
    secret.write_bytes(SECRET)
    database = "databases/campus.ndjson.gz"
    if case == "attachment by absolute path":
        data = lines(with_attachment(str(secret)))
    elif case == "attachment by relative path":
        data = lines(with_attachment(os.path.relpath(secret, root / writer.name)))
    elif case == "attachment through a symbolic link":
        blob = writer.store_blob("attachments", [SECRET])
        data = lines(with_attachment(blob))
    else:  # a database file outside, holding the secret inline
        (outside / "campus.ndjson.gz").write_bytes(lines({"_id": "leak", "secret": SECRET.decode()}))
        database = str(outside / "campus.ndjson.gz")
        data = lines({"_id": "plain"})
    with writer.create("databases/campus.ndjson.gz") as out:
        out.write(data)
    entry = {"name": "campus", "file": database, "security": {}, "docs": 1}
    snapshot = writer.commit({"kind": "couchdb", "databases": [entry]})
    if case == "attachment through a symbolic link":
        # Same bytes, so the manifest's sha256 and size still match: only the link is wrong.
        (snapshot / blob).unlink()
        (snapshot / blob).symlink_to(secret)
    return snapshot


CASES = {
    "attachment by absolute path": "is not one of the snapshot's files",
    "attachment by relative path": "is not one of the snapshot's files",
    "attachment through a symbolic link": "is a symbolic link",
    "database file outside": "databases[0] (campus): file",
}


@pytest.mark.parametrize("case", CASES)
def test_restore_reads_nothing_outside_the_snapshot(case: str, pouchdb: Server, tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    snapshot = hostile_snapshot(tmp_path / "backups", case, outside)
    checked = agent("verify", str(snapshot))
    assert checked.returncode == 1, checked.stdout
    assert CASES[case] in checked.stderr and "Traceback" not in checked.stderr
    restored = agent("restore", "--from", str(snapshot), "--url", pouchdb.url)
    assert restored.returncode == 1, restored.stdout
    assert CASES[case] in restored.stderr and "Traceback" not in restored.stderr
    # Refused before anything was written: the database was never created.
    assert "campus" not in pouchdb.call("GET", "/_all_dbs")


def test_a_document_line_that_is_not_one_is_a_clear_error(pouchdb: Server, tmp_path: Path) -> None:
    writer = SnapshotWriter(tmp_path / "backups", dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    with writer.create("databases/campus.ndjson.gz") as out:
        out.write(gzip.compress(b'{"_id":"ok"}\n{"_id":"bad","_attachments":[1]}\n'))
    snapshot = writer.commit(
        {
            "kind": "couchdb",
            "databases": [{"name": "campus", "file": "databases/campus.ndjson.gz", "security": {}}],
        }
    )
    checked = agent("verify", str(snapshot))
    assert checked.returncode == 1
    assert "databases/campus.ndjson.gz:2: _attachments: not an object of attachments" in checked.stderr
    restored = agent("restore", "--from", str(snapshot), "--url", pouchdb.url)
    assert restored.returncode == 1 and "Traceback" not in restored.stderr
    assert "campus" not in pouchdb.call("GET", "/_all_dbs")
