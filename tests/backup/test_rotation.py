"""Rotation: the pure rule against an independent brute-force model, and on a real tree."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.backup.couchdb_fixtures import AGENT, agent

sys.path.insert(0, str(AGENT))
from backup_agent.rotation import Retention, keep
from backup_agent.snapshot import LOCK, NAME_FORMAT, locked

UTC = dt.UTC


def brute_force(times: list[dt.datetime], retention: Retention) -> set[dt.datetime]:
    """restic's forget, read literally: per rule, the newest snapshot of each of the last N
    calendar buckets that hold any snapshot; rules ORed; the newest snapshot always."""

    def buckets(key: str, time: dt.datetime) -> tuple[int, ...]:
        if key == "day":
            return (time.year, time.month, time.day)
        if key == "week":
            iso = time.isocalendar()
            return (iso.year, iso.week)
        return (time.year, time.month)

    kept = {max(times)} if times else set()
    for key, count in (("day", retention.daily), ("week", retention.weekly), ("month", retention.monthly)):
        grouped: dict[tuple[int, ...], list[dt.datetime]] = {}
        for instant in times:
            grouped.setdefault(buckets(key, instant), []).append(instant)
        for bucket in sorted(grouped, reverse=True)[:count]:
            kept.add(max(grouped[bucket]))
    return kept


instants = st.datetimes(
    min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2027, 12, 31), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))


@settings(max_examples=400, deadline=None)
@given(
    times=st.lists(instants, max_size=60, unique=True),
    daily=st.integers(0, 10),
    weekly=st.integers(0, 6),
    monthly=st.integers(0, 14),
)
def test_rotation_matches_the_brute_force_model(
    times: list[dt.datetime], daily: int, weekly: int, monthly: int
) -> None:
    retention = Retention(daily, weekly, monthly)
    kept = keep(times, retention)
    assert kept == brute_force(times, retention)
    if times:
        assert max(times) in kept
    assert kept <= set(times)


def test_weeks_run_monday_to_sunday_in_utc() -> None:
    sunday = dt.datetime(2026, 11, 22, 23, 30, tzinfo=UTC)
    monday = dt.datetime(2026, 11, 23, 0, 30, tzinfo=UTC)
    # Two weeks, one snapshot each: both kept by weekly=2; weekly=1 keeps only Monday's.
    assert keep([sunday, monday], Retention(0, 2, 0)) == {sunday, monday}
    assert keep([sunday, monday], Retention(0, 1, 0)) == {monday}
    # Buckets are UTC days: 08:00 on Monday in Tokyo is 23:00 on Sunday in UTC.
    tokyo_monday = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert keep([tokyo_monday, monday], Retention(2, 0, 0)) == {tokyo_monday, monday}
    # ...so it shares Sunday's bucket, where the newer (23:30 UTC) snapshot wins.
    assert keep([tokyo_monday, sunday], Retention(1, 0, 0)) == {sunday}


def make_tree(root: Path, times: list[dt.datetime]) -> None:
    for instant in times:
        snapshot = root / instant.strftime(NAME_FORMAT)
        snapshot.mkdir(parents=True)
        (snapshot / "manifest.json").write_text("{}")


def test_rotate_deletes_only_complete_snapshots_outside_the_retention(tmp_path: Path) -> None:
    start = dt.datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    times = [start + dt.timedelta(days=day) for day in range(120)]
    root = tmp_path / "couchdb"
    make_tree(root, times)
    (root / "20270101T000000Z.partial").mkdir()
    (root / "notes").mkdir()
    result = agent("rotate", "--root", str(root), "--daily", "7", "--weekly", "4", "--monthly", "3")
    assert result.returncode == 0, result.stderr
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    expected = {t.strftime(NAME_FORMAT) for t in brute_force(times, Retention(7, 4, 3))}
    assert set(report["kept"]) == expected
    remaining = {path.name for path in root.iterdir() if not path.name.startswith(".")}
    assert remaining == expected | {"20270101T000000Z.partial", "notes"}


def blocked_on(inode: int, pid: int) -> bool:
    """Whether `pid` waits for a flock on the file with this inode, as /proc/locks says."""
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if fields[1:3] == ["->", "FLOCK"] and fields[5] == str(pid) and fields[6].endswith(f":{inode}"):
            return True
    return False


def test_rotate_waits_for_a_backup_that_holds_the_lock(tmp_path: Path) -> None:
    root = tmp_path / "couchdb"
    make_tree(root, [dt.datetime(2026, 1, day, tzinfo=UTC) for day in range(1, 11)])
    released = threading.Event()
    holding = threading.Event()

    def backup_in_progress() -> None:
        with locked(root):
            holding.set()
            released.wait(30)

    thread = threading.Thread(target=backup_in_progress)
    thread.start()
    assert holding.wait(30)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backup_agent",
            "rotate",
            "--root",
            str(root),
            "--daily",
            "1",
            "--weekly",
            "0",
            "--monthly",
            "0",
        ],
        env={"PYTHONPATH": str(AGENT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The kernel lists a process blocked in flock() as a waiter ("->") in /proc/locks:
    # once rotate's PID is there, it has reached the lock and is waiting on it.
    inode = (root / LOCK).stat().st_ino
    give_up = time.monotonic() + 60  # only so that a broken agent cannot hang the suite
    while not blocked_on(inode, process.pid):
        assert process.poll() is None, f"rotate ended without waiting: {process.communicate()}"
        assert time.monotonic() < give_up, "rotate never reached the lock"
        time.sleep(0.01)
    assert len([p for p in root.iterdir() if p.is_dir()]) == 10
    released.set()
    thread.join()
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert [p.name for p in root.iterdir() if p.is_dir()] == ["20260110T000000Z"]
    assert len(json.loads(out)["deleted"]) == 9
