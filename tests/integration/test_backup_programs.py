"""The backup path with the real programs: the rendered snapshot script against a real
MariaDB with the real mysqldump, and node-exporter, run as nobody, reading the backup
jobs' metrics from a directory made with the seed's own modes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.cluster.component import BACKUP_PATH, METRICS_PATH
from tests.backup.couchdb_fixtures import agent
from tests.integration.generated import build_example, kubelet_args, named, read_manifest
from tests.integration.mariadb import MariaDB, mariadb
from tests.integration.netns import Link, link
from tests.tools import require

__all__ = ["link"]  # a fixture
BACKUP_NODE = "vault"
TRAILER = b"-- Dump completed"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_example(tmp_path_factory.mktemp("backup-programs"))


def pod(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    template = spec["jobTemplate"]["spec"]["template"] if workload["kind"] == "CronJob" else spec["template"]
    return dict(template["spec"])


class Snapshot:
    """The rendered snapshot script, pointed at a local server, run as its CronJob runs it."""

    def __init__(self, dist: Path, tmp_path: Path, server: MariaDB, *, connect_seconds: int = 60) -> None:
        backup = read_manifest(dist, "backup")
        script = named(backup, "ConfigMap", "backup-scripts")["data"]["snapshot.sh"]
        assert "connect_seconds=60\n" in script
        local = {
            "--host mysql.openedx.svc.cluster.local --port 3306": f"--host 127.0.0.1 --port {server.port}",
            "connect_seconds=60\n": f"connect_seconds={connect_seconds}\n",
        }
        for service, address in local.items():
            assert script.count(service) == 1, service
            script = script.replace(service, address)
        self.script = tmp_path / "snapshot.sh"
        self.script.write_text(script)
        (container,) = pod(named(backup, "CronJob", "backup-mysql"))["containers"]
        self.command = [
            str(self.script) if part == "/scripts/snapshot.sh" else part for part in container["command"]
        ]
        env = {item["name"]: item.get("value") for item in container["env"]}
        self.backups = tmp_path / "backups"
        self.metrics = tmp_path / "metrics"
        assert env["BACKUP_ROOT"] == "/backups" and env["METRICS_DIR"] == "/metrics"
        self.env = {
            "PATH": os.environ["PATH"],
            "BACKUP_ROOT": str(self.backups),
            "METRICS_DIR": str(self.metrics),
            "MYSQL_ROOT_PASSWORD": server.password,
        }

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, "mysql"], env=self.env, capture_output=True, text=True, check=False, timeout=300
        )

    def start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.command, "mysql"], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def left(self) -> list[str]:
        """Everything a run left, relative to the test's directory."""
        return sorted(
            str(path.relative_to(self.script.parent))
            for root in (self.backups, self.metrics)
            if root.exists()
            for path in root.rglob("*")
        )


def test_a_dump_of_a_running_server_becomes_a_verified_snapshot_and_a_metric(
    dist: Path, tmp_path: Path
) -> None:
    with mariadb(tmp_path / "db") as server:
        server.start()
        server.grant_root_over_tcp()
        server.sql("CREATE DATABASE edxapp; CREATE TABLE edxapp.t (x INT); INSERT INTO edxapp.t VALUES (42);")
        snapshot = Snapshot(dist, tmp_path, server)
        result = snapshot.run()
    assert result.returncode == 0, result.stderr
    (taken,) = (snapshot.backups / "mysql").iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}Z", taken.name)
    verified = agent("verify", str(taken))
    assert verified.returncode == 0, verified.stderr
    assert json.loads((taken / "manifest.json").read_text())["kind"] == "mysql"
    dump = subprocess.run(
        ["gzip", "-dc", str(taken / "all-databases.sql.gz")], capture_output=True, check=True
    )
    assert b"INSERT INTO `t` VALUES" in dump.stdout and dump.stdout.rstrip().splitlines()[-1].startswith(
        TRAILER
    )
    metric = snapshot.metrics / "mysql.prom"
    assert metric.read_text().startswith('meshseed_backup_last_success_timestamp_seconds{kind="mysql"} ')
    # node-exporter reads it as nobody.
    assert metric.stat().st_mode & 0o777 == 0o644
    assert server.password not in result.stdout + result.stderr


def test_a_stopped_server_leaves_no_snapshot_partial_or_metric(dist: Path, tmp_path: Path) -> None:
    with mariadb(tmp_path / "db") as server:
        # The port of a server that is not running: every connection is refused.
        snapshot = Snapshot(dist, tmp_path, server, connect_seconds=3)
        started = time.monotonic()
        result = snapshot.run()
    assert result.returncode != 0
    # It kept trying for the (here shortened) minute before giving up.
    assert time.monotonic() - started >= 3
    assert "retrying" in result.stderr and "cannot connect to MySQL" in result.stderr
    assert snapshot.left() == ["backups/mysql"], snapshot.left()


def test_a_dump_that_fails_midway_leaves_nothing(dist: Path, tmp_path: Path) -> None:
    with mariadb(tmp_path / "db") as server:
        server.start()
        server.grant_root_over_tcp()
        # A view over a dropped table: mysqldump connects, starts writing, then fails.
        server.sql(
            "CREATE DATABASE edxapp; CREATE TABLE edxapp.t (x INT); "
            "CREATE VIEW edxapp.v AS SELECT x FROM edxapp.t; DROP TABLE edxapp.t;"
        )
        snapshot = Snapshot(dist, tmp_path, server)
        result = snapshot.run()
    assert result.returncode != 0
    assert "mysqldump" in result.stderr
    assert snapshot.left() == ["backups/mysql"], snapshot.left()


def test_the_first_connection_waits_for_a_server_that_is_not_reachable_yet(
    dist: Path, tmp_path: Path
) -> None:
    with mariadb(tmp_path / "db") as server:
        server.start()
        server.grant_root_over_tcp()
        server.stop()
        snapshot = Snapshot(dist, tmp_path, server)
        # As for a new Job pod that kube-router does not allow through yet.
        running = snapshot.start()
        try:
            time.sleep(4)
            assert running.poll() is None, running.communicate()
            server.start()
            _, stderr = running.communicate(timeout=120)
        finally:
            if running.poll() is None:
                running.kill()
                running.wait()
    assert running.returncode == 0, stderr
    assert "retrying" in stderr
    assert [path.name for path in (snapshot.backups / "mysql").iterdir()] != []
    assert (snapshot.metrics / "mysql.prom").exists()


@pytest.fixture
def host_root() -> Iterator[Path]:
    """A stand-in for the backup node's /, which nobody may enter (unlike pytest's tmp)."""
    root = Path(tempfile.mkdtemp(prefix="meshseed-host-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        subprocess.run(["rm", "-rf", "--", str(root)], check=True)


def seed_directories(dist: Path, root: Path) -> None:
    """Make the backup node's directories as its seed does: cloud-init's runcmd mkdir
    (umask 022), then node-setup's chmod of /var/lib/meshseed."""
    user_data = yaml.safe_load((dist / "nodes" / BACKUP_NODE / "user-data").read_text())
    (mkdir,) = [command for command in user_data["runcmd"] if command[0] == "mkdir"]
    assert mkdir[:4] == ["mkdir", "-p", "-m", "0755"] and set(mkdir[4:]) == {BACKUP_PATH, METRICS_PATH}
    node_setup = next(f["content"] for f in user_data["write_files"] if f["path"].endswith("/node-setup"))
    private = re.findall(r"^chmod (0\d{3}) (/var/lib/meshseed)$", node_setup, flags=re.MULTILINE)
    assert private == [("0700", "/var/lib/meshseed")]
    subprocess.run(
        ["sh", "-c", 'umask 022 && exec "$@"', "sh", *mkdir[:4], *(f"{root}{path}" for path in mkdir[4:])],
        check=True,
    )
    for mode, path in private:
        (root / path.lstrip("/")).chmod(int(mode, 8))


def test_node_exporter_as_nobody_reads_the_backup_metrics_under_the_seed_modes(
    dist: Path, link: Link, host_root: Path, tmp_path: Path
) -> None:
    # Debian's node-exporter is 1.5.0; the pinned image is v1.9.1. The flags used here
    # (textfile directory, --no-collector.textfile) and the textfile format are the same.
    exporter = require("prometheus-node-exporter", "prometheus-node-exporter")
    setpriv = require("setpriv", "util-linux")
    seed_directories(dist, host_root)
    # What the backup jobs write there (the volume is the metrics directory itself).
    with mariadb(tmp_path / "db") as server:
        server.start()
        server.grant_root_over_tcp()
        snapshot = Snapshot(dist, tmp_path, server)
        snapshot.metrics = host_root / METRICS_PATH.lstrip("/")
        snapshot.backups = host_root / BACKUP_PATH.lstrip("/")
        snapshot.env.update(BACKUP_ROOT=str(snapshot.backups), METRICS_DIR=str(snapshot.metrics))
        result = snapshot.run()
    assert result.returncode == 0, result.stderr
    monitoring = read_manifest(dist, "monitoring")
    # Only the backup node's node-exporter has the textfile collector.
    backup = pod(named(monitoring, "DaemonSet", "node-exporter-backup"))
    assert backup["nodeSelector"] == {"meshseed/role": "backup"}
    (container,) = backup["containers"]
    assert backup["securityContext"]["runAsUser"] == 65534
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    args = [
        arg.replace("=/host", f"={host_root}")
        for arg in kubelet_args(container, {"NODE_IP": link.server_address})
    ]
    # uid and gid 65534, no supplementary groups, no capabilities: as in the pod.
    nobody = [
        setpriv,
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]
    link.start([*nobody, exporter, *args], cwd=host_root)
    metrics = link.http(9100, "/metrics").decode()
    assert re.search(r'^meshseed_backup_last_success_timestamp_seconds\{kind="mysql"\} \d+', metrics, re.M), (
        metrics
    )
    assert re.search(r"^node_textfile_scrape_error 0$", metrics, re.M), metrics


def test_node_exporter_elsewhere_has_no_textfile_collector(dist: Path, link: Link, host_root: Path) -> None:
    monitoring = read_manifest(dist, "monitoring")
    others = pod(named(monitoring, "DaemonSet", "node-exporter"))
    terms = others["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "meshseed/role", "operator": "NotIn", "values": ["backup"]}]}
    ]
    (container,) = others["containers"]
    assert "--no-collector.textfile" in container["args"]
    assert not [arg for arg in container["args"] if arg.startswith("--collector.textfile.directory")]
    # Run on a server's / (no metrics directory), it reports no textfile scrape error.
    exporter = require("prometheus-node-exporter", "prometheus-node-exporter")
    args = [
        arg.replace("=/host", f"={host_root}")
        for arg in kubelet_args(container, {"NODE_IP": link.server_address})
    ]
    link.start([exporter, *args], cwd=host_root)
    metrics = link.http(9100, "/metrics").decode()
    assert "node_exporter_build_info" in metrics
    assert not re.search(r"^node_textfile_scrape_error 1$", metrics, re.M), metrics


# Stand-ins for the mongo image's mongosh and mongodump, which Debian does not ship: each
# writes the archive as the case says. The real mongodump archive starts with 0x8199e26d.
MONGODUMP = {
    "complete": 'printf "\\155\\342\\231\\201archive" | gzip > "$archive"',
    "exit status": 'printf "\\155\\342\\231\\201arch" | gzip > "$archive"; exit 1',
    "truncated gzip": 'printf "\\155\\342\\231\\201archive" | gzip | head -c 15 > "$archive"',
    "empty archive": 'gzip < /dev/null > "$archive"',
}


@pytest.mark.parametrize("case", sorted(MONGODUMP))
def test_a_mongodb_snapshot_is_kept_only_when_mongodump_succeeded_with_an_archive(
    dist: Path, tmp_path: Path, case: str
) -> None:
    backup = read_manifest(dist, "backup")
    script = tmp_path / "snapshot.sh"
    script.write_text(named(backup, "ConfigMap", "backup-scripts")["data"]["snapshot.sh"])
    (container,) = pod(named(backup, "CronJob", "backup-mongodb"))["containers"]
    command = [str(script) if part == "/scripts/snapshot.sh" else part for part in container["command"]]
    tools = tmp_path / "stand-ins"
    tools.mkdir()
    (tools / "mongosh").write_text("#!/bin/sh\necho 1\n")
    # It also keeps its arguments and the --config file it was given, as it saw them.
    (tools / "mongodump").write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\n'
        'for arg; do case "$arg" in --archive=*) archive=${arg#--archive=} ;; esac; done\n'
        'while [ "$#" -gt 1 ]; do [ "$1" = --config ] && cat "$2" > '
        f"{tmp_path}/config; shift; done\n" + MONGODUMP[case] + "\n"
    )
    for tool in tools.iterdir():
        tool.chmod(0o755)
    env = {
        "PATH": f"{tools}:{os.environ['PATH']}",
        "BACKUP_ROOT": str(tmp_path / "backups"),
        "METRICS_DIR": str(tmp_path / "metrics"),
        "MONGODB_BACKUP_PASSWORD": "backup-pw",
        "TMPDIR": str(tmp_path / "private"),
    }
    (tmp_path / "private").mkdir()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    argv = (tmp_path / "argv").read_text().splitlines()
    # From a secondary of the replica set, its password in the --config file only.
    assert argv[argv.index("--readPreference") + 1] == "secondary"
    assert argv[argv.index("--host") + 1].startswith(
        "openedx/mongodb-0.mongodb.openedx.svc.cluster.local:27017,"
    )
    assert "--oplog" in argv
    assert not [arg for arg in argv if "backup-pw" in arg]
    assert (tmp_path / "config").read_text() == 'password: "backup-pw"\n'
    # The config file is gone, whatever the outcome.
    assert list((tmp_path / "private").iterdir()) == []
    for kept in ("argv", "config"):
        (tmp_path / kept).unlink()
    (tmp_path / "private").rmdir()
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if "stand-ins" not in p.parts)
    if case == "complete":
        assert result.returncode == 0, result.stderr
        (taken,) = (tmp_path / "backups" / "mongodb").iterdir()
        assert agent("verify", str(taken)).returncode == 0
        assert (tmp_path / "metrics" / "mongodb.prom").exists()
    else:
        assert result.returncode != 0
        assert left == ["backups", "backups/mongodb", "metrics", "snapshot.sh"], left
