"""The pods' Galera scripts (bootstrap, writer choice, routing) against real Galera.

Three members of Debian's MariaDB + galera-4 on 127.0.0.1, started by galera-start.sh,
with galera-router.sh in front, as in the pods (see galera_cluster.py for what differs
from Percona XtraDB Cluster). Failover times are printed (pytest -s) and appended to
$GALERA_TIMES if set.
"""

from __future__ import annotations

import itertools
import os
import random
import secrets
import select
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.galera_cluster import Galera, galera
from tests.integration.generated import build_example, named, read_manifest
from tests.tools import require

SCRIPTS = ("galera-start.sh", "galera-writer.sh", "galera-router.sh", "galera-metrics.sh")


def report(line: str) -> None:
    print(f"galera: {line}")
    if os.environ.get("GALERA_TIMES"):
        with Path(os.environ["GALERA_TIMES"]).open("a") as out:
            out.write(line + "\n")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example site's build: the scripts come from its manifests, as the pods get them."""
    return build_example(tmp_path_factory.mktemp("galera-build"))


@pytest.fixture(scope="module")
def cluster(dist: Path) -> Iterator[Galera]:
    # Not under pytest's tmp_path: its parent is private to root, and the members run as mysql.
    root = Path(tempfile.mkdtemp(prefix="galera-"))
    root.chmod(0o755)
    config = named(read_manifest(dist, "galera"), "ConfigMap", "galera-config")["data"]
    scripts = {name: config[name] for name in SCRIPTS}
    try:
        with galera(root, scripts, secrets.token_hex(16)) as running:
            yield running
    finally:
        if not os.environ.get("GALERA_KEEP"):
            shutil.rmtree(root, ignore_errors=True)


class Writes:
    """A client that inserts numbered rows through the router, one connection each (as
    Django without persistent connections), and keeps the numbers it saw acknowledged."""

    def __init__(self, cluster: Galera) -> None:
        self.cluster = cluster
        self.acknowledged: list[tuple[int, float]] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = require("mariadb", "mariadb-client")
        number = 0
        while not self._stop.is_set():
            number += 1
            try:
                ran = subprocess.run(
                    [
                        client,
                        f"--defaults-extra-file={self.cluster.root / 'client.cnf'}",
                        "--host=127.0.0.1",
                        f"--port={self.cluster.router_port}",
                        "--protocol=tcp",
                        "--connect-timeout=2",
                        f"--execute=INSERT INTO meshseed.acks (id) VALUES ({number})",
                    ],
                    capture_output=True,
                    check=False,
                    timeout=10,
                )
                ok = ran.returncode == 0
            except subprocess.TimeoutExpired:
                ok = False
            if ok:
                self.acknowledged.append((number, time.monotonic()))
            else:
                self.failed += 1
                time.sleep(0.05)

    def __enter__(self) -> Writes:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def wait_for(self, count: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        start = len(self.acknowledged)
        while len(self.acknowledged) < start + count:
            assert time.monotonic() < deadline, f"fewer than {count} writes in {seconds}s"
            time.sleep(0.05)

    def gap_after(self, moment: float) -> float:
        """The longest time without an acknowledged write, from the last write acknowledged
        before `moment`: how long the writes were down (a write in flight at `moment` may
        still be acknowledged just after it)."""
        times = [at for _, at in self.acknowledged]
        before = [at for at in times if at <= moment]
        after = [at for at in times if at > moment]
        assert before and after, "no write was acknowledged before or after the failure"
        series = [before[-1], *after]
        return max(later - earlier for earlier, later in itertools.pairwise(series))


def stored(cluster: Galera, port: int) -> set[int]:
    out = cluster.sql(port, "SELECT id FROM meshseed.acks")
    return {int(line) for line in out.split()}


def test_a_clean_first_start_bootstraps_one_cluster_and_routes_to_member_0(cluster: Galera) -> None:
    for member in random.sample(cluster.members, 3):
        cluster.start(member)
    took = cluster.wait_synced(cluster.members, seconds=40)
    report(f"clean first start: 3 members Synced after {took:.1f}s")
    # Exactly one bootstrap: the log of every other member says it joined.
    bootstraps = [m for m in cluster.members if "bootstrapping a new cluster" in m.log.read_text()]
    assert [m.ordinal for m in bootstraps] == [0]
    cluster.sql(
        cluster.members[0].sql, "CREATE DATABASE meshseed; CREATE TABLE meshseed.acks (id INT PRIMARY KEY)"
    )
    cluster.start_router()
    deadline = time.monotonic() + 15
    while cluster.writer() != cluster.members[0].address:
        assert time.monotonic() < deadline, f"router chose {cluster.writer()!r}"
        time.sleep(0.2)
    # What the alert rules read: a writer, and every member seeing all three.
    metrics = cluster.metrics()
    assert metrics["galera_writer"] == 1
    for member in cluster.members:
        assert metrics[f'galera_member_fit{{member="{member.address}"}}'] == 1
        assert metrics[f'galera_member_cluster_size{{member="{member.address}"}}'] == 3


def test_the_writer_killed_under_writes_moves_them_to_member_1_and_loses_none(cluster: Galera) -> None:
    first, second, _ = cluster.members
    with Writes(cluster) as writes:
        writes.wait_for(20)
        killed_at = time.monotonic()
        cluster.kill(first)
        writes.wait_for(20, seconds=60)
    gap = writes.gap_after(killed_at)
    report(
        f"writer SIGKILLed: writes resumed on the next member after {gap:.1f}s ({writes.failed} failed tries)"
    )
    assert gap < 10
    assert cluster.writer() == second.address
    # Galera evicts the killed member from the view a little later (evs.inactive_timeout).
    deadline = time.monotonic() + 30
    while cluster.metrics()[f'galera_member_cluster_size{{member="{second.address}"}}'] != 2:
        assert time.monotonic() < deadline, cluster.metrics()
        time.sleep(0.5)
    report(f"writer SIGKILLed: the view dropped it after {time.monotonic() - killed_at:.1f}s")
    metrics = cluster.metrics()
    assert metrics[f'galera_member_cluster_size{{member="{first.address}"}}'] == 0
    assert metrics[f'galera_member_fit{{member="{first.address}"}}'] == 0
    assert metrics["galera_writer"] == 1
    acknowledged = {number for number, _ in writes.acknowledged}
    assert acknowledged <= stored(cluster, second.sql)
    # The killed member comes back by itself: it finds the Primary component and joins.
    cluster.start(first)
    cluster.wait_synced(cluster.members, seconds=40)
    assert acknowledged <= stored(cluster, first.sql)
    # Once it is fit again it is the writer again (the lowest fit ordinal).
    deadline = time.monotonic() + 15
    while cluster.writer() != first.address:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_a_frozen_writer_loses_the_writes_within_10_s_and_its_return_cuts_old_sessions(
    cluster: Galera,
) -> None:
    """SIGSTOP instead of SIGKILL: no connection is refused or reset, everything times out,
    as when the writer's server lost power. When it is back and the writer again, the
    sessions the router forwarded to the interim writer are ended: one writer at a time."""
    first, second, _ = cluster.members
    assert cluster.writer() == first.address
    with Writes(cluster) as writes:
        writes.wait_for(20)
        frozen_at = time.monotonic()
        cluster.freeze(first)
        writes.wait_for(20, seconds=60)
    gap = writes.gap_after(frozen_at)
    report(f"writer frozen (SIGSTOP): writes resumed on the next member after {gap:.1f}s")
    assert gap < 10
    assert cluster.writer() == second.address
    assert {number for number, _ in writes.acknowledged} <= stored(cluster, second.sql)
    session = subprocess.Popen(
        [
            require("mariadb", "mariadb-client"),
            f"--defaults-extra-file={cluster.root / 'client.cnf'}",
            "--host=127.0.0.1",
            f"--port={cluster.router_port}",
            "--protocol=tcp",
            "--skip-reconnect",
            # Each answer as it comes: batch mode buffers its output until it ends.
            "--unbuffered",
            "--batch",
            "--skip-column-names",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert session.stdin is not None and session.stdout is not None
    session.stdin.write("SELECT @@port;\n")
    session.stdin.flush()
    readable, _, _ = select.select([session.stdout], [], [], 15)
    assert readable, "the session through the router did not answer"
    assert session.stdout.readline().strip() == str(second.sql)
    cluster.kill(first)
    cluster.start(first)
    cluster.wait_synced(cluster.members)
    deadline = time.monotonic() + 15
    while cluster.writer() != first.address:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(1)
    out, err = session.communicate("SELECT @@port;\n", timeout=30)
    assert session.returncode != 0 and out == "", (out, err)
    assert "Lost connection" in err or "gone away" in err, err


def test_all_killed_then_started_in_random_order_the_most_advanced_bootstraps(cluster: Galera) -> None:
    # The writer (member 0) dies first and the writes go on without it, so that it is
    # behind the others when all are dead: bootstrapping it would lose acknowledged rows.
    with Writes(cluster) as writes:
        writes.wait_for(20)
        cluster.kill(cluster.members[0])
        writes.wait_for(20, seconds=60)
        for member in cluster.members[1:]:
            cluster.kill(member)
    acknowledged = {number for number, _ in writes.acknowledged}
    for member in cluster.members:
        grastate = (member.datadir / "grastate.dat").read_text()
        assert "seqno:   -1" in grastate or "seqno: -1" in grastate, grastate
    logged = {m.ordinal: len(m.log.read_text()) for m in cluster.members}
    order = random.sample(cluster.members, 3)
    began = time.monotonic()
    for member in order[:2]:
        cluster.start(member)
        time.sleep(random.uniform(0, 3))
    # Two of three cannot know whether the third holds later writes: nobody bootstraps.
    time.sleep(8)
    for member in order[:2]:
        text = member.log.read_text()[logged[member.ordinal] :]
        assert "2 of 3 positions known" in text and "bootstrapping" not in text, text
    cluster.start(order[2])
    cluster.wait_synced(cluster.members, seconds=180)
    took = time.monotonic() - began
    positions = {
        m.ordinal: int((m.root / "galera-position").read_text())
        for m in cluster.members
        if (m.root / "galera-position").exists()
    }
    bootstraps = [
        m.ordinal
        for m in cluster.members
        if "bootstrapping a new cluster" in m.log.read_text()[logged[m.ordinal] :]
    ]
    report(
        f"all SIGKILLed, started in order {[m.ordinal for m in order]}: positions {positions}, "
        f"member {bootstraps} bootstrapped, all Synced after {took:.1f}s"
    )
    assert len(bootstraps) == 1
    (leader,) = bootstraps
    # The most advanced, and of equals the lowest ordinal; never the one left behind.
    assert len(positions) == 3
    assert positions[0] < max(positions.values())
    assert leader == min(o for o, seqno in positions.items() if seqno == max(positions.values()))
    for member in cluster.members:
        assert acknowledged <= stored(cluster, member.sql)


def test_a_wiped_member_rejoins_by_state_transfer(cluster: Galera) -> None:
    wiped = cluster.members[2]
    cluster.kill(wiped)
    shutil.rmtree(wiped.datadir)
    cluster.empty_datadir(wiped)
    began = time.monotonic()
    cluster.start(wiped)
    cluster.wait_synced(cluster.members, seconds=40)
    report(f"wiped datadir: member 2 rejoined by SST after {time.monotonic() - began:.1f}s")
    assert "our position: -2" in wiped.log.read_text()
    assert stored(cluster, wiped.sql) == stored(cluster, cluster.members[0].sql)
    assert "SST" in (wiped.root / "mysqld.err").read_text()


def test_the_backup_dumps_from_a_member_that_is_not_the_writer(
    cluster: Galera, dist: Path, tmp_path: Path
) -> None:
    """The rendered snapshot script, with the backup CronJob's environment."""
    backup = read_manifest(dist, "backup")
    scripts = named(backup, "ConfigMap", "backup-scripts")["data"]
    for name in ("snapshot.sh", "galera-writer.sh"):
        (tmp_path / name).write_text(scripts[name])
    cronjob = named(backup, "CronJob", "backup-mysql")
    (container,) = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    members = [f"galera-{i}.galera.openedx.svc.cluster.local:3306" for i in range(3)]
    assert env["GALERA_SQL"] == " ".join(members)
    command = [
        str(tmp_path / "snapshot.sh") if part == "/scripts/snapshot.sh" else part
        for part in container["command"]
    ]

    # Statement counters are each member's own: they show which member answered the dump.
    def dumped() -> list[int]:
        return [int(cluster.status(m, "Com_show_create_table") or 0) for m in cluster.members]

    # The cluster is shared with the failover tests before this one: member 0 may still be
    # rejoining, and the writer moves back to it once it is Synced.
    deadline = time.monotonic() + 120
    while cluster.writer() != cluster.members[0].address and time.monotonic() < deadline:
        time.sleep(1)
    assert cluster.writer() == cluster.members[0].address
    before = dumped()
    ran = subprocess.run(
        command,
        env={
            "PATH": os.environ["PATH"],
            "BACKUP_ROOT": str(tmp_path / "backups"),
            "METRICS_DIR": str(tmp_path / "metrics"),
            "MYSQL_ROOT_PASSWORD": cluster.password,
            "GALERA_SQL": " ".join(m.address for m in cluster.members),
            "GALERA_CLIENT": env["GALERA_CLIENT"],
            "GALERA_USER": env["GALERA_USER"],
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    after = dumped()
    assert after[2] > before[2], (before, after)
    assert after[0] == before[0] and after[1] == before[1], (before, after)
    (snapshot,) = (tmp_path / "backups" / "mysql").iterdir()
    assert (snapshot / "manifest.json").exists() and (snapshot / "all-databases.sql.gz").exists()
