"""What `backup pull` copies, against the rule it must keep: older snapshots from the node
never push a local copy out, and everything copied survives the local rotation."""

from __future__ import annotations

import datetime as dt
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.backup.couchdb_fixtures import AGENT

sys.path.insert(0, str(AGENT))
from backup_agent.rotation import Retention, keep

from builder.backup_pull import to_copy

UTC = dt.UTC
FORMAT = "%Y%m%dT%H%M%SZ"

instants = st.datetimes(
    min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2026, 6, 30), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))


def by_name(times: list[dt.datetime]) -> dict[str, dt.datetime]:
    return {time.strftime(FORMAT): time for time in times}


@settings(max_examples=300, deadline=None)
@given(
    local=st.lists(instants, max_size=30, unique=True),
    remote=st.lists(instants, max_size=40, unique=True),
    daily=st.integers(0, 8),
    weekly=st.integers(0, 5),
    monthly=st.integers(0, 4),
)
def test_older_snapshots_never_push_a_local_copy_out(
    local: list[dt.datetime], remote: list[dt.datetime], daily: int, weekly: int, monthly: int
) -> None:
    rules = Retention(daily, weekly, monthly)
    here = by_name(sorted(keep(local, rules)))  # the local tree, as the last rotation left it
    newest = max(here.values(), default=None)
    older = {name: time for name, time in by_name(remote).items() if newest is not None and time < newest}
    copied = to_copy(older, here, rules)
    after = keep([*here.values(), *(older[name] for name in copied)], rules)
    assert set(here.values()) <= after
    assert {older[name] for name in copied} <= after


@settings(max_examples=300, deadline=None)
@given(
    local=st.lists(instants, max_size=30, unique=True),
    remote=st.lists(instants, max_size=40, unique=True),
    daily=st.integers(0, 8),
    weekly=st.integers(0, 5),
    monthly=st.integers(0, 4),
)
def test_what_is_copied_survives_the_rotation(
    local: list[dt.datetime], remote: list[dt.datetime], daily: int, weekly: int, monthly: int
) -> None:
    rules = Retention(daily, weekly, monthly)
    here = by_name(sorted(keep(local, rules)))
    offered = by_name(remote)
    copied = to_copy(offered, here, rules)
    assert not set(copied) & set(here)
    assert {offered[name] for name in copied} <= keep([*here.values(), *(offered[n] for n in copied)], rules)
