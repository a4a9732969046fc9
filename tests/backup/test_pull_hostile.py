"""`meshseed backup pull` from a backup node that lies: a real sshd on 127.0.0.1 serving
hostile snapshots (issue 18, item 5). This machine's copies must survive it."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backup.couchdb_fixtures import agent
from tests.backup.sshd_fixtures import Sshd
from tests.backup.test_pull import make_snapshot, pull, site_with_retention
from tests.tools import require, unavailable

UTC = dt.UTC
NAME = "%Y%m%dT%H%M%SZ"


def names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if not path.name.startswith("."))


def genuine_days(root: Path, days: int) -> list[str]:
    """One snapshot a day at 01:00 UTC, the newest yesterday, on the node; their names."""
    yesterday = dt.datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    times = [yesterday - dt.timedelta(days=day) for day in range(days)]
    return sorted(make_snapshot(root / "remote" / "couchdb", time, size=100).name for time in times)


def test_snapshots_dated_in_the_future_are_refused_and_genuine_copies_stay(
    sshd: Sshd, tmp_path: Path, master_key_file: Path
) -> None:
    site_with_retention(tmp_path, "{daily: 7, weekly: 4, monthly: 12}")
    genuine = genuine_days(tmp_path, 5)
    first = pull(tmp_path, sshd, master_key_file, "--json")
    assert first.returncode == 0, first.stderr
    local = tmp_path / "pulled" / "couchdb"
    assert names(local) == genuine
    # The node is taken over: 40 snapshots of nothing, one a month from 9990 on.
    remote = tmp_path / "remote" / "couchdb"
    for month in range(40):
        writer_time = dt.datetime(9990 + month // 12, month % 12 + 1, 1, tzinfo=UTC)
        make_snapshot(remote, writer_time, size=1)
    attacked = pull(tmp_path, sshd, master_key_file, "--json")
    assert attacked.returncode == 1, attacked.stderr
    assert "dated in the future, refused: couchdb/99900101T000000Z" in attacked.stderr
    assert "and 35 more" in attacked.stderr and "Traceback" not in attacked.stderr
    report = json.loads(attacked.stdout)
    assert len(report["refused"]["couchdb"]) == 40
    assert report["copied"] == {} and report["deleted"] == {}
    assert names(local) == genuine
    # Copies an older meshseed let in count for nothing in the local rotation either.
    for month in range(0, 40, 3):
        name = dt.datetime(9990 + month // 12, month % 12 + 1, 1, tzinfo=UTC).strftime(NAME)
        subprocess.run(["cp", "-a", str(remote / name), str(local / name)], check=True)
    again = pull(tmp_path, sshd, master_key_file, "--json")
    assert again.returncode == 1
    assert json.loads(again.stdout)["deleted"] == {}
    assert set(genuine) <= set(names(local))
    for name in genuine:
        assert agent("verify", str(local / name)).returncode == 0


def test_snapshots_dated_just_after_the_genuine_ones_cannot_push_them_out(
    sshd: Sshd, tmp_path: Path, master_key_file: Path
) -> None:
    site_with_retention(tmp_path, "{daily: 7, weekly: 0, monthly: 0}")
    genuine = genuine_days(tmp_path, 7)
    assert pull(tmp_path, sshd, master_key_file).returncode == 0
    local = tmp_path / "pulled" / "couchdb"
    assert names(local) == genuine
    # A node that dates a snapshot half an hour after each genuine one (all in the past)
    # would win every day's bucket of the retention, which keeps the newest of each day.
    remote = tmp_path / "remote" / "couchdb"
    for name in genuine[:-1]:
        make_snapshot(remote, dt.datetime.strptime(name, NAME).replace(tzinfo=UTC, minute=30), size=1)
    attacked = pull(tmp_path, sshd, master_key_file, "--json")
    assert attacked.returncode == 0, attacked.stderr
    report = json.loads(attacked.stdout)
    assert report["copied"] == {} and report["deleted"] == {}
    assert names(local) == genuine
    # A genuinely newer snapshot, today's, still rotates the oldest copy out, as a new backup does.
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    newer = make_snapshot(remote, today, size=10).name
    later = pull(tmp_path, sshd, master_key_file, "--json")
    assert later.returncode == 0, later.stderr
    assert json.loads(later.stdout)["copied"] == {"couchdb": [newer]}
    assert names(local) == [*genuine[1:], newer]


def test_a_node_that_sends_more_than_the_manifest_names_is_cut_off(
    sshd: Sshd, tmp_path: Path, master_key_file: Path
) -> None:
    site_with_retention(tmp_path, "{daily: 7, weekly: 0, monthly: 0}")
    snapshot = make_snapshot(tmp_path / "remote" / "couchdb", dt.datetime(2026, 11, 1, tzinfo=UTC), size=1000)
    with (snapshot / "databases" / "campus.ndjson.gz").open("ab") as grown:
        grown.write(b"\0" * (8 << 20))
    result = pull(tmp_path, sshd, master_key_file)
    assert result.returncode == 1
    assert (
        "campus.ndjson.gz on the backup node sent more than the 1000 bytes its manifest names"
        in result.stderr
    )
    written = tmp_path / "pulled" / "couchdb" / "20261101T000000Z.partial" / "databases" / "campus.ndjson.gz"
    assert written.stat().st_size == 1000
    assert not (tmp_path / "pulled" / "couchdb" / "20261101T000000Z").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": "1000"}, "campus.ndjson.gz: needs a sha256 (64 hex digits) and a size"),
        ({"size": -1}, "campus.ndjson.gz: needs a sha256 (64 hex digits) and a size"),
        ({"sha256": "../../etc/passwd"}, "needs a sha256"),
        ({"rename": "../outside"}, "'../outside' is not a path inside the snapshot"),
        ({"rename": "/tmp/outside"}, "'/tmp/outside' is not a path inside the snapshot"),
        ({"snapshot": "20991231T000000Z"}, "is the manifest of '20991231T000000Z', not of 20261101T000000Z"),
    ],
)
def test_a_manifest_that_is_not_one_is_refused(
    sshd: Sshd, tmp_path: Path, master_key_file: Path, change: dict[str, object], message: str
) -> None:
    site_with_retention(tmp_path, "{daily: 7, weekly: 0, monthly: 0}")
    snapshot = make_snapshot(tmp_path / "remote" / "couchdb", dt.datetime(2026, 11, 1, tzinfo=UTC))
    manifest = json.loads((snapshot / "manifest.json").read_text())
    entry = manifest["files"]["databases/campus.ndjson.gz"]
    if "snapshot" in change:
        manifest["snapshot"] = change["snapshot"]
    elif "rename" in change:
        manifest["files"][change["rename"]] = manifest["files"].pop("databases/campus.ndjson.gz")
    else:
        entry.update(change)
    (snapshot / "manifest.json").write_text(json.dumps(manifest))
    result = pull(tmp_path, sshd, master_key_file)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and "internal error" not in result.stderr
    assert not (tmp_path / "outside").exists() and not Path("/tmp/outside").exists()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for this test alone, unmounted by its path afterwards."""
    mount = require("mount", "mount")
    target = tmp_path / "pulled"
    target.mkdir()
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=1m,mode=0755", "meshseed-test", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        unavailable(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run([require("umount", "mount"), str(target)], check=True)


def test_a_full_local_disk_is_a_clean_error(
    sshd: Sshd, tmp_path: Path, master_key_file: Path, small_disk: Path
) -> None:
    site_with_retention(tmp_path, "{daily: 7, weekly: 0, monthly: 0}")
    make_snapshot(tmp_path / "remote" / "couchdb", dt.datetime(2026, 11, 1, tzinfo=UTC), size=3 << 20)
    result = pull(tmp_path, sshd, master_key_file)
    assert result.returncode == 1
    assert (
        f"error: no space left on {small_disk} while pulling couchdb/20261101T000000Z into pulled/couchdb"
        in result.stderr
    ), result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    # Nothing looks complete, and the next run, with room, continues the copy.
    assert names(small_disk / "couchdb") == ["20261101T000000Z.partial"]
