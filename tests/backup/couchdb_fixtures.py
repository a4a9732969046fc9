"""pouchdb-server on 127.0.0.1 (a CouchDB-API server), the agent's command line, test data."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import REPO
from tests.integration.oci_fixtures import free_port
from tests.tools import require

AGENT = REPO / "images" / "backup" / "agent"


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")


def start_pouchdb(work: Path, port: int | None = None) -> Server:
    program = require("pouchdb-server", "npm: pouchdb-server (.ci/run installs it)")
    port = port or free_port()
    work = work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    # pouchdb-server writes its /_config (with any admin's password hash) to config.json and
    # its log to log.txt, relative to its working directory unless told otherwise; both are
    # pinned inside `work` so that neither can land in the checkout (issue 14).
    config = work / f"pouchdb-{port}.config.json"
    config.write_text(json.dumps({"log": {"file": str(work / f"pouchdb-{port}.log.txt")}}))
    with (work / f"pouchdb-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *(program, "--in-memory", "--host", "127.0.0.1", "--port", str(port)),
                *("--dir", str(work), "--config", str(config)),
            ],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/", timeout=2):
                return Server(url, process)
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"pouchdb-server did not answer on {url}")


@contextlib.contextmanager
def running_pouchdb(work: Path, port: int | None = None) -> Iterator[Server]:
    """A pouchdb-server for the length of the block; ended by its PID afterwards."""
    server = start_pouchdb(work, port)
    try:
        yield server
    finally:
        server.process.kill()
        server.process.wait()


@pytest.fixture
def pouchdb(tmp_path: Path) -> Iterator[Server]:
    with running_pouchdb(tmp_path / "pouchdb") as server:
        yield server


@pytest.fixture
def second_pouchdb(tmp_path: Path) -> Iterator[Server]:
    with running_pouchdb(tmp_path / "pouchdb-second") as server:
        yield server


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the backup agent as the image does: `python3 -m backup_agent ...`."""
    environment = {**os.environ, "PYTHONPATH": str(AGENT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "backup_agent", *args],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )


def agent_process(*args: str) -> subprocess.Popen[str]:
    environment = {**os.environ, "PYTHONPATH": str(AGENT)}
    return subprocess.Popen(
        [sys.executable, "-m", "backup_agent", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def fill(server: Server, db: str, *, docs: int, attachment_sizes: tuple[int, ...] = ()) -> None:
    """`docs` documents, conflicts, deletions, a design document, attachments, _security."""
    db = quote(db, safe="")
    server.call("PUT", f"/{db}")
    batch = []
    for number in range(docs):
        batch.append({"_id": f"doc-{number:06d}", "number": number, "text": "x" * (number % 50)})
        if len(batch) == 1000:
            server.call("POST", f"/{db}/_bulk_docs", {"docs": batch})
            batch = []
    if batch:
        server.call("POST", f"/{db}/_bulk_docs", {"docs": batch})
    # Conflicts: two branches from one parent, written as replication would.
    branches = []
    for number in range(50):
        root = hashlib.md5(f"root{number}".encode()).hexdigest()
        for branch in ("left", "right"):
            leaf = hashlib.md5(f"{branch}{number}".encode()).hexdigest()
            branches.append(
                {
                    "_id": f"conflict-{number}",
                    "_rev": f"2-{leaf}",
                    "side": branch,
                    "_revisions": {"start": 2, "ids": [leaf, root]},
                }
            )
    server.call("POST", f"/{db}/_bulk_docs", {"new_edits": False, "docs": branches})
    # Deletions.
    for number in range(0, min(docs, 200), 7):
        current = server.call("GET", f"/{db}/doc-{number:06d}")
        server.call("DELETE", f"/{db}/doc-{number:06d}?rev={current['_rev']}")
    server.call(
        "PUT",
        f"/{db}/_design/app",
        {
            "views": {"by_number": {"map": "function (doc) { if (doc.number) emit(doc.number); }"}},
            "validate_doc_update": "function (n, o, u) {}",
        },
    )
    for index, size in enumerate(attachment_sizes):
        data = os.urandom(size)
        server.call(
            "PUT",
            f"/{db}/blob-{index}",
            {
                "kind": "blob",
                "_attachments": {
                    "payload.bin": {
                        "content_type": "application/octet-stream",
                        "data": base64.b64encode(data).decode(),
                    },
                    "note.txt": {
                        "content_type": "text/plain",
                        "data": base64.b64encode(b"note %d" % index).decode(),
                    },
                },
            },
        )
    server.call(
        "PUT",
        f"/{db}/_security",
        {
            "admins": {"names": ["ops"], "roles": ["admins"]},
            "members": {"names": [], "roles": ["learners"]},
        },
    )


def everything(server: Server, db: str) -> dict[str, Any]:
    """Every leaf revision with history and attachment bytes, plus _security, for comparing."""
    db = quote(db, safe="")
    changes = server.call("GET", f"/{db}/_changes?style=all_docs")["results"]
    wanted = [{"id": row["id"], "rev": change["rev"]} for row in changes for change in row["changes"]]
    leaves: dict[str, Any] = {}
    for start in range(0, len(wanted), 500):
        answer = server.call(
            "POST", f"/{db}/_bulk_get?revs=true&attachments=true", {"docs": wanted[start : start + 500]}
        )
        for result in answer["results"]:
            for entry in result["docs"]:
                document = entry["ok"]
                for attachment in document.get("_attachments", {}).values():
                    # revpos and digest are the server's bookkeeping; the bytes are what count.
                    attachment.pop("revpos", None)
                    attachment.pop("digest", None)
                leaves[f"{document['_id']} {document['_rev']}"] = document
    return {"leaves": leaves, "security": server.call("GET", f"/{db}/_security")}
