"""The pouchdb-server fixture keeps every file the server writes inside its own directory."""

from __future__ import annotations

from pathlib import Path

from tests.backup.couchdb_fixtures import running_pouchdb
from tests.conftest import REPO


def test_pouchdb_server_writes_only_inside_its_work_directory(tmp_path: Path) -> None:
    before = set(REPO.iterdir())
    work = tmp_path / "work"
    with running_pouchdb(work) as server:
        # Setting an admin is what once left a password hash in a committed config.json.
        server.call("PUT", "/_config/admins/ops", "not-a-real-password")
    assert set(REPO.iterdir()) == before
    assert set(tmp_path.iterdir()) == {work}
    written = {path.name.split(".", 1)[1] for path in work.iterdir()}
    assert written == {"config.json", "log", "log.txt"}
    (config,) = work.glob("*.config.json")
    assert '"ops": "-pbkdf2-' in config.read_text()
