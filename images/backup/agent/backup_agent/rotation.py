"""Grandfather-father-son retention, with restic's `forget` semantics.

Buckets are calendar days, ISO weeks (Monday to Sunday) and months, in UTC. Each rule
walks the snapshots from newest to oldest and keeps the newest one of each bucket, until
it has kept one in as many buckets as it is allowed; buckets without snapshots do not
count. A snapshot is kept if any rule keeps it.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from backup_agent.snapshot import complete_snapshots, locked

Bucket = Callable[[dt.datetime], tuple[int, ...]]


def day(time: dt.datetime) -> tuple[int, ...]:
    utc = time.astimezone(dt.UTC)
    return (utc.year, utc.month, utc.day)


def week(time: dt.datetime) -> tuple[int, ...]:
    year, number, _ = time.astimezone(dt.UTC).isocalendar()
    return (year, number)


def month(time: dt.datetime) -> tuple[int, ...]:
    utc = time.astimezone(dt.UTC)
    return (utc.year, utc.month)


@dataclass(frozen=True)
class Retention:
    daily: int = 7
    weekly: int = 4
    monthly: int = 12

    def rules(self) -> list[tuple[int, Bucket]]:
        return [(self.daily, day), (self.weekly, week), (self.monthly, month)]


def keep(times: Iterable[dt.datetime], retention: Retention) -> set[dt.datetime]:
    """The snapshots to keep; the newest is always among them."""
    newest_first = sorted(set(times), reverse=True)
    kept: set[dt.datetime] = set(newest_first[:1])
    for allowed, bucket in retention.rules():
        last: tuple[int, ...] | None = None
        remaining = allowed
        for time in newest_first:
            if remaining <= 0:
                break
            current = bucket(time)
            if current != last:
                kept.add(time)
                last = current
                remaining -= 1
    return kept


def rotate_tree(root: Path, retention: Retention, *, dry_run: bool = False) -> tuple[list[str], list[str]]:
    """Apply `retention` to the complete snapshots under `root`: (kept, deleted) names.

    The tree's lock is held throughout, so a snapshot being written (always `.partial`,
    never counted) is never touched.
    """
    with locked(root):
        snapshots = complete_snapshots(root)
        kept_times = keep(snapshots.values(), retention)
        kept = sorted(name for name, time in snapshots.items() if time in kept_times)
        deleted = sorted(name for name, time in snapshots.items() if time not in kept_times)
        if not dry_run:
            for name in deleted:
                shutil.rmtree(root / name)
    return kept, deleted
