"""`meshseed backup pull` against a real sshd on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.backup.couchdb_fixtures import AGENT, agent
from tests.backup.sshd_fixtures import Sshd, keygen
from tests.conftest import EXAMPLE_SITE
from tests.integration.cli import MESHSEED, environment, meshseed

sys.path.insert(0, str(AGENT))
from backup_agent.snapshot import SnapshotWriter

UTC = dt.UTC


def make_snapshot(root: Path, when: dt.datetime, *, size: int = 1000) -> Path:
    """A real snapshot, written by the agent's own writer."""
    writer = SnapshotWriter(root, when)
    with writer.create("databases/campus.ndjson.gz") as out:
        out.write(os.urandom(size))
    writer.store_blob("attachments", [b"attachment of " + when.isoformat().encode()])
    return writer.commit({"kind": root.name, "databases": []})


def site_with_retention(root: Path, local: str) -> Path:
    site = root / "site.yaml"
    site.write_text(EXAMPLE_SITE.read_text() + f"backups:\n  local_retention: {local}\n")
    return site


def pull_args(root: Path, sshd: Sshd, *extra: str) -> list[str]:
    return [
        *extra,
        "backup",
        "pull",
        "site.yaml",
        "--to",
        "pulled",
        "--user",
        sshd.user,
        "--ssh-config",
        str(sshd.client_config),
        "--remote-root",
        str(root / "remote"),
    ]


def pull(root: Path, sshd: Sshd, key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return meshseed(*pull_args(root, sshd), *extra, cwd=root, master_key=key)


def test_pull_copies_new_snapshots_once_verified(sshd: Sshd, tmp_path: Path, master_key_file: Path) -> None:
    site_with_retention(tmp_path, "{daily: 30, weekly: 0, monthly: 0}")
    start = dt.datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    for day in range(3):
        make_snapshot(tmp_path / "remote" / "couchdb", start + dt.timedelta(days=day))
    make_snapshot(tmp_path / "remote" / "mysql", start)
    (tmp_path / "remote" / "couchdb" / "20261105T020000Z.partial").mkdir()
    first = pull(tmp_path, sshd, master_key_file, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["copied"] == {
        "couchdb": ["20261101T020000Z", "20261102T020000Z", "20261103T020000Z"],
        "mysql": ["20261101T020000Z"],
    }
    local = tmp_path / "pulled"
    for snapshot in [*(local / "couchdb").glob("2*"), *(local / "mysql").glob("2*")]:
        assert agent("verify", str(snapshot)).returncode == 0
        assert not snapshot.name.endswith(".partial")
    make_snapshot(tmp_path / "remote" / "couchdb", start + dt.timedelta(days=3))
    second = pull(tmp_path, sshd, master_key_file, "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["copied"] == {"couchdb": ["20261104T020000Z"]}


def test_an_interrupted_pull_resumes_where_it_stopped(
    sshd: Sshd, tmp_path: Path, master_key_file: Path
) -> None:
    site_with_retention(tmp_path, "{daily: 7, weekly: 0, monthly: 0}")
    make_snapshot(tmp_path / "remote" / "couchdb", dt.datetime(2026, 11, 1, tzinfo=UTC), size=400 << 20)
    command = [MESHSEED, *pull_args(tmp_path, sshd, "--debug")]
    partial = tmp_path / "pulled" / "couchdb" / "20261101T000000Z.partial" / "databases" / "campus.ndjson.gz"
    env = environment(master_key_file)
    with subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        deadline = time.monotonic() + 60
        while (not partial.exists() or partial.stat().st_size < 20 << 20) and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.communicate()
    cut = partial.stat().st_size
    assert 0 < cut < 400 << 20
    resumed = meshseed(*pull_args(tmp_path, sshd, "--debug"), cwd=tmp_path, master_key=master_key_file)
    assert resumed.returncode == 0, resumed.stderr
    # The second run asked only for the bytes after the cut.
    assert f"tail -c +{cut + 1} " in resumed.stderr
    (snapshot,) = (tmp_path / "pulled" / "couchdb").glob("2*")
    assert agent("verify", str(snapshot)).returncode == 0


def test_local_retention_applies_and_rotated_snapshots_are_not_copied_again(
    sshd: Sshd, tmp_path: Path, master_key_file: Path
) -> None:
    site_with_retention(tmp_path, "{daily: 3, weekly: 2, monthly: 0}")
    start = dt.datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
    for day in range(30):
        make_snapshot(tmp_path / "remote" / "couchdb", start + dt.timedelta(days=day), size=10)
    first = pull(tmp_path, sshd, master_key_file, "--json")
    assert first.returncode == 0, first.stderr
    kept = sorted(
        path.name for path in (tmp_path / "pulled" / "couchdb").iterdir() if not path.name.startswith(".")
    )
    # Three days (28-30 Oct) and the newest of two weeks (the week of 26 Oct holds the 30th; the one before, the 25th).
    assert kept == ["20261025T020000Z", "20261028T020000Z", "20261029T020000Z", "20261030T020000Z"]
    again = pull(tmp_path, sshd, master_key_file, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["copied"] == {}


def test_a_copy_that_does_not_match_its_manifest_is_not_kept(
    sshd: Sshd, tmp_path: Path, master_key_file: Path
) -> None:
    site_with_retention(tmp_path, "{daily: 7, weekly: 0, monthly: 0}")
    snapshot = make_snapshot(tmp_path / "remote" / "couchdb", dt.datetime(2026, 11, 1, tzinfo=UTC))
    target = snapshot / "databases" / "campus.ndjson.gz"
    data = bytearray(target.read_bytes())
    data[10] ^= 0xFF
    target.write_bytes(bytes(data))
    result = pull(tmp_path, sshd, master_key_file)
    assert result.returncode == 1
    assert "does not match its manifest" in result.stderr and "campus.ndjson.gz has sha256" in result.stderr
    assert [p.name for p in (tmp_path / "pulled" / "couchdb").glob("2*")] == ["20261101T000000Z.partial"]


def test_an_empty_file_is_copied(sshd: Sshd, tmp_path: Path, master_key_file: Path) -> None:
    site_with_retention(tmp_path, "{daily: 7, weekly: 0, monthly: 0}")
    make_snapshot(tmp_path / "remote" / "couchdb", dt.datetime(2026, 11, 1, tzinfo=UTC), size=0)
    result = pull(tmp_path, sshd, master_key_file)
    assert result.returncode == 0, result.stderr
    copied = tmp_path / "pulled" / "couchdb" / "20261101T000000Z"
    assert (copied / "databases" / "campus.ndjson.gz").read_bytes() == b""
    assert agent("verify", str(copied)).returncode == 0


def test_an_unreachable_node_is_a_clear_error(tmp_path: Path, master_key_file: Path) -> None:
    site_with_retention(tmp_path, "{daily: 7}")
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  HostName 127.0.0.1\n  Port 9\n  ConnectTimeout 5\n")
    result = meshseed(
        "backup",
        "pull",
        "site.yaml",
        "--to",
        "pulled",
        "--ssh-config",
        str(config),
        cwd=tmp_path,
        master_key=master_key_file,
    )
    assert result.returncode == 1
    assert "error: ssh debian@2001:db8:40::14" in result.stderr and "Traceback" not in result.stderr
    shutil.rmtree(tmp_path / "pulled", ignore_errors=True)


def test_a_node_presenting_another_host_key_is_refused(
    sshd: Sshd, tmp_path: Path, master_key_file: Path
) -> None:
    """The same sshd with a host key the master key did not derive: nothing is copied,
    whatever the operator's ssh_config says (here StrictHostKeyChecking no)."""
    site_with_retention(tmp_path, "{daily: 30, weekly: 0, monthly: 0}")
    make_snapshot(tmp_path / "remote" / "couchdb", dt.datetime(2026, 11, 1, 2, 0, tzinfo=UTC))
    assert pull(tmp_path, sshd, master_key_file).returncode == 0
    shutil.rmtree(tmp_path / "pulled")
    work = sshd.client_config.parent
    (work / "host_key").unlink()
    keygen(work / "host_key")
    # sshd reads its host keys for every new connection.
    result = pull(tmp_path, sshd, master_key_file)
    assert result.returncode == 1, result.stderr
    assert "Host key verification failed" in result.stderr, result.stderr
    assert not (tmp_path / "pulled" / "couchdb").exists() or not any(
        (tmp_path / "pulled" / "couchdb").iterdir()
    )
