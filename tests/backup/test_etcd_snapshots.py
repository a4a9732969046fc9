"""etcd snapshots from a server to the backup node: the sender the CronJob runs (the
rendered script) against the real agent's receiver (`backup etcd-receive`) on ::1, and the
etcd kind through verify, rotation and `meshseed backup pull`."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pytest

from tests.backup.couchdb_fixtures import AGENT, agent
from tests.backup.sshd_fixtures import Sshd
from tests.backup.test_pull import pull, site_with_retention
from tests.backup.test_rotation import brute_force
from tests.conftest import REPO
from tests.integration.oci_fixtures import free_port

sys.path.insert(0, str(AGENT))
from backup_agent import etcd
from backup_agent.rotation import Retention
from backup_agent.snapshot import NAME_FORMAT

UTC = dt.UTC
TOKEN = "f0" * 32
SENDER = REPO / "cloud-init" / "manifests" / "backup" / "etcd-snapshot-send.py.j2"
PAGE = 4096


def etcd_snapshot(
    directory: Path, node: str, taken: dt.datetime, *, pages: int = 4, zipped: bool = True
) -> Path:
    """A file shaped as k3s leaves one: a database of whole pages, its sha256 at its end,
    and (compressed) alone in a zip archive named after it."""
    name = f"etcd-snapshot-{node}-{int(taken.timestamp())}"
    database = os.urandom(PAGE * pages)
    data = database + hashlib.sha256(database).digest()
    directory.mkdir(parents=True, exist_ok=True)
    if not zipped:
        path = directory / name
        path.write_bytes(data)
    else:
        path = directory / f"{name}.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(name, data)
    path.chmod(0o600)
    return path


@dataclass
class Receiver:
    process: subprocess.Popen[str]
    port: int
    root: Path
    metrics: Path

    @property
    def url(self) -> str:
        return f"http://[::1]:{self.port}/etcd"

    def stop(self) -> tuple[str, str]:
        self.process.terminate()
        return self.process.communicate(timeout=30)


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    port = free_port()
    root, metrics = tmp_path / "backups" / "etcd", tmp_path / "metrics"
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "backup_agent", "etcd-receive", "--listen", "::1", "--port", str(port)),
            *("--out", str(root), "--metrics", str(metrics)),
        ],
        env={**os.environ, "PYTHONPATH": str(AGENT), "ETCD_SNAPSHOT_TOKEN": TOKEN},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # It says so once it listens.
    assert "receiving etcd snapshots" in process.stdout.readline()
    running = Receiver(process, port, root, metrics)
    yield running
    if process.poll() is None:
        running.stop()


def sender_script() -> str:
    """The sender as the build renders it into its ConfigMap."""
    return jinja2.Template(SENDER.read_text(), keep_trailing_newline=True).render()


def send(directory: Path, url: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    script = directory.parent / "etcd-snapshot-send.py"
    script.write_text(sender_script())
    env = {**os.environ, "SNAPSHOT_DIR": str(directory), "RECEIVER_URL": url, "ETCD_SNAPSHOT_TOKEN": token}
    return subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=False)


def stored(root: Path) -> list[Path]:
    return sorted(path for path in root.iterdir() if not path.name.startswith(".")) if root.exists() else []


def put(port: int, headers: dict[str, str], body: bytes) -> tuple[int, str]:
    connection = http.client.HTTPConnection("::1", port, timeout=60)
    connection.request("PUT", "/etcd", body=body, headers=headers)
    answer = connection.getresponse()
    return answer.status, answer.read().decode()


@pytest.mark.parametrize("zipped", [True, False], ids=["compressed", "plain"])
def test_the_newest_snapshot_becomes_a_private_verified_etcd_snapshot_and_a_metric(
    receiver: Receiver, tmp_path: Path, zipped: bool
) -> None:
    server = tmp_path / "server" / "snapshots"
    now = dt.datetime.now(UTC).replace(microsecond=0)
    etcd_snapshot(server, "edx1", now - dt.timedelta(hours=12), zipped=zipped)
    newest = etcd_snapshot(server, "edx1", now - dt.timedelta(hours=6), zipped=zipped)
    etcd_snapshot(server, "edx1", now - dt.timedelta(hours=18), zipped=zipped)
    # etcd writes a snapshot as <name>.part first; k3s's metadata is no snapshot either.
    (server / f"etcd-snapshot-edx1-{int(now.timestamp())}.part").write_bytes(b"half")
    (server / ".metadata").mkdir()

    sent = send(server, receiver.url)
    assert sent.returncode == 0, sent.stderr
    (snapshot,) = stored(receiver.root)
    assert f"stored as etcd/{snapshot.name}" in sent.stdout
    manifest = json.loads((snapshot / "manifest.json").read_text())
    assert manifest["kind"] == "etcd" and manifest["file"] == newest.name
    assert manifest["taken"] == (now - dt.timedelta(hours=6)).isoformat()
    assert manifest["files"][newest.name]["sha256"] == hashlib.sha256(newest.read_bytes()).hexdigest()
    assert (snapshot / newest.name).read_bytes() == newest.read_bytes()
    verified = agent("verify", str(snapshot))
    assert verified.returncode == 0, verified.stderr
    # Private to the archive's user: the snapshot holds the cluster's Secrets.
    for path in [receiver.root, snapshot, *snapshot.rglob("*")]:
        assert path.stat().st_mode & 0o077 == 0, path
    # The metric says when k3s took it, for node-exporter (which runs as nobody).
    metric = receiver.metrics / "etcd.prom"
    taken = int((now - dt.timedelta(hours=6)).timestamp())
    assert metric.read_text() == f'meshseed_backup_last_success_timestamp_seconds{{kind="etcd"}} {taken}\n'
    assert metric.stat().st_mode & 0o777 == 0o644
    out, err = receiver.stop()
    assert TOKEN not in sent.stdout + sent.stderr + out + err


def test_an_older_snapshot_sent_later_leaves_the_metric_at_the_newest(
    receiver: Receiver, tmp_path: Path
) -> None:
    now = dt.datetime.now(UTC).replace(microsecond=0)
    first, second = tmp_path / "edx1", tmp_path / "edx2"
    etcd_snapshot(first, "edx1", now - dt.timedelta(hours=1))
    etcd_snapshot(second, "edx2", now - dt.timedelta(hours=30))
    assert send(first, receiver.url).returncode == 0
    later = send(second, receiver.url)
    assert later.returncode == 0, later.stderr
    assert len(stored(receiver.root)) == 2
    taken = int((now - dt.timedelta(hours=1)).timestamp())
    assert (receiver.metrics / "etcd.prom").read_text().endswith(f" {taken}\n")


def damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: PAGE * 2 + 17])


def damaged_inside_the_zip(path: Path) -> None:
    with zipfile.ZipFile(path) as archive:
        (name,) = archive.namelist()
        data = bytearray(archive.read(name))
    data[PAGE] ^= 0xFF
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, bytes(data))


@pytest.mark.parametrize(
    ("zipped", "harm", "reason"),
    [
        (False, cut_short, "is not the size of an etcd snapshot"),
        (False, damage, "does not match the sha256 at its end"),
        (True, cut_short, "not a whole zip archive"),
        (True, damaged_inside_the_zip, "does not match the sha256 at its end"),
    ],
    ids=["plain-cut-short", "plain-damaged", "zip-cut-short", "zip-damaged-inside"],
)
def test_a_damaged_snapshot_is_refused_and_leaves_nothing(
    receiver: Receiver, tmp_path: Path, zipped: bool, harm: object, reason: str
) -> None:
    server = tmp_path / "server"
    path = etcd_snapshot(server, "edx1", dt.datetime.now(UTC) - dt.timedelta(hours=1), zipped=zipped)
    assert callable(harm)
    harm(path)
    sent = send(server, receiver.url)
    assert sent.returncode == 1
    assert "(422)" in sent.stderr and reason in sent.stderr
    assert stored(receiver.root) == []
    assert not (receiver.metrics / "etcd.prom").exists()


def test_what_arrives_other_than_sent_is_refused(receiver: Receiver, tmp_path: Path) -> None:
    path = etcd_snapshot(tmp_path, "edx1", dt.datetime.now(UTC) - dt.timedelta(hours=1))
    body = path.read_bytes()
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Snapshot-Name": path.name}
    wrong = {**headers, "X-Snapshot-Sha256": hashlib.sha256(body + b"x").hexdigest()}
    status, text = put(receiver.port, wrong, body)
    assert status == 422 and "the sender sent" in text
    assert stored(receiver.root) == []
    # An upload cut off before its Content-Length: its partial snapshot goes too.
    connection = socket.create_connection(("::1", receiver.port), timeout=60)
    right = {**headers, "X-Snapshot-Sha256": hashlib.sha256(body).hexdigest()}
    head = "".join(f"{key}: {value}\r\n" for key, value in right.items())
    connection.sendall(f"PUT /etcd HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode())
    connection.sendall(body[: len(body) // 2])
    connection.close()
    # The receiver serves one request at a time: once the next is answered, the cut one is done.
    status, _ = put(receiver.port, {**right, "X-Snapshot-Name": "etcd-snapshot-edx1-x"}, body)
    assert status == 400
    assert stored(receiver.root) == []
    status, name = put(receiver.port, right, body)
    assert status == 201
    assert [path.name for path in stored(receiver.root)] == [name.strip()]


@pytest.mark.parametrize("pages", [4, 8192], ids=["small", "still-sending-when-refused"])
def test_a_sender_without_the_token_is_turned_away(receiver: Receiver, tmp_path: Path, pages: int) -> None:
    # A big snapshot is still being sent when the receiver answers and closes: the sender
    # must report the answer, not the broken pipe.
    when = dt.datetime.now(UTC) - dt.timedelta(hours=1)
    etcd_snapshot(tmp_path / "server", "edx1", when, pages=pages, zipped=False)
    sent = send(tmp_path / "server", receiver.url, token="0" * 64)
    assert sent.returncode == 1 and "(401)" in sent.stderr
    assert "0" * 64 not in sent.stderr + sent.stdout
    assert stored(receiver.root) == []


def test_a_snapshot_damaged_on_the_backup_node_fails_verify(receiver: Receiver, tmp_path: Path) -> None:
    etcd_snapshot(tmp_path / "server", "edx1", dt.datetime.now(UTC) - dt.timedelta(hours=1))
    assert send(tmp_path / "server", receiver.url).returncode == 0
    (snapshot,) = stored(receiver.root)
    (kept,) = [path for path in snapshot.iterdir() if path.name != "manifest.json"]
    damage(kept)
    refused = agent("verify", str(snapshot))
    assert refused.returncode == 1 and f"{kept.name} has sha256" in refused.stderr


def test_the_receiver_will_not_start_without_a_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backup_agent", "etcd-receive", "--port", "1", "--out", str(tmp_path)],
        env={**{k: v for k, v in os.environ.items() if k != "ETCD_SNAPSHOT_TOKEN"}, "PYTHONPATH": str(AGENT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "ETCD_SNAPSHOT_TOKEN" in result.stderr


def received(root: Path, taken: dt.datetime, now: dt.datetime) -> Path:
    """A snapshot stored by the receiver's own code, as if it had arrived at `now`."""
    path = etcd_snapshot(root.parent / "server", "edx1", taken)
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    snapshot, _ = etcd.receive(
        root, name=path.name, sha256=sha256, size=len(data), body=io.BytesIO(data), now=now
    )
    path.unlink()
    return snapshot


def test_rotation_keeps_the_etcd_kind_as_the_others(tmp_path: Path) -> None:
    root = tmp_path / "backups" / "etcd"
    start = dt.datetime(2026, 1, 1, 1, 30, tzinfo=UTC)
    times = [start + dt.timedelta(days=day) for day in range(60)]
    for when in times:
        received(root, when - dt.timedelta(minutes=90), when)
    result = agent("rotate", "--root", str(root), "--daily", "7", "--weekly", "4", "--monthly", "3")
    assert result.returncode == 0, result.stderr
    expected = {when.strftime(NAME_FORMAT) for when in brute_force(times, Retention(7, 4, 3))}
    assert {path.name for path in stored(root)} == expected
    for name in expected:
        assert agent("verify", str(root / name)).returncode == 0


def test_pull_copies_the_etcd_kind(sshd: Sshd, tmp_path: Path, master_key_file: Path) -> None:
    site_with_retention(tmp_path, "{daily: 30, weekly: 0, monthly: 0}")
    remote = tmp_path / "remote" / "etcd"
    start = dt.datetime(2026, 11, 1, 1, 30, tzinfo=UTC)
    for day in range(2):
        received(remote, start + dt.timedelta(days=day, minutes=-90), start + dt.timedelta(days=day))
    result = pull(tmp_path, sshd, master_key_file, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["copied"] == {"etcd": ["20261101T013000Z", "20261102T013000Z"]}
    for snapshot in (tmp_path / "pulled" / "etcd").glob("2*"):
        verified = agent("verify", str(snapshot))
        assert verified.returncode == 0, verified.stderr
