"""etcd snapshots, as k3s takes them on the servers, kept as snapshots of the `etcd` kind.

The servers send their newest snapshot to `backup etcd-receive`, a small HTTP server on
the backup node (the etcd-snapshot-send CronJob; its script is
cloud-init/manifests/backup/etcd-snapshot-send.py.j2): one PUT per snapshot, with the
shared token, the snapshot's file name and its sha256. The receiver streams the body into
a new `<time>.partial` snapshot, checks its size and sha256 against what the sender said
and that it is a whole etcd snapshot, and only then commits it with the agent's manifest.

An etcd snapshot is etcd's bbolt database followed by the sha256 of everything before it
(32 bytes; etcd's own restore checks it the same way, by a size of 512n + 32). k3s's
`etcd-snapshot-compress` puts that file alone into a zip archive named `<name>.zip`.

Snapshots hold the cluster's Secrets (encrypted, since secrets-encryption is on, but with
everything else in clear): every file and directory this writes is private to its owner
(0600, 0700), and nothing here logs a byte of them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any, Protocol

from backup_agent.snapshot import (
    NAME_FORMAT,
    SnapshotError,
    SnapshotWriter,
    complete_snapshots,
    locked,
    member,
    read_manifest,
)

KIND = "etcd"


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# k3s's names: <base>-<node>-<unix time>, and .zip when compressed.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}-(?P<time>\d{9,11})(?P<zip>\.zip)?$")
HASH_SIZE = 32
PAGE = 512
# etcd's default backend quota is 2 GiB; a snapshot is at most about that.
MAX_SIZE = 8 << 30
CHUNK = 1 << 20
# How far ahead of the receiver's clock a snapshot's time may be.
CLOCK_SKEW = dt.timedelta(hours=1)


def taken_at(name: str) -> dt.datetime:
    """The time k3s put into a snapshot's name; SnapshotError for another name."""
    match = NAME.match(name)
    if not match:
        raise SnapshotError(
            f"{name!r} is not the name of a k3s etcd snapshot (<name>-<node>-<unix time>[.zip])"
        )
    return dt.datetime.fromtimestamp(int(match["time"]), dt.UTC)


def check_snapshot(path: Path) -> None:
    """SnapshotError unless `path` is a whole etcd snapshot (zipped or not): its trailing
    sha256 matches the database before it."""
    if path.name.endswith(".zip"):
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
                if len(members) != 1 or members[0].is_dir():
                    raise SnapshotError(
                        f"{path.name}: a zipped etcd snapshot holds one file, not {len(members)}"
                    )
                with archive.open(members[0]) as stream:
                    _check_stream(stream, members[0].file_size, path.name)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as error:
            raise SnapshotError(f"{path.name}: not a whole zip archive: {error}") from None
        return
    with path.open("rb") as stream:
        _check_stream(stream, path.stat().st_size, path.name)


def _check_stream(stream: Readable, size: int, name: str) -> None:
    if size < PAGE + HASH_SIZE or size % PAGE != HASH_SIZE:
        raise SnapshotError(
            f"{name}: {size} bytes is not the size of an etcd snapshot with its sha256 (512n + 32):"
            " it is cut short or not one"
        )
    digest, left = hashlib.sha256(), size - HASH_SIZE
    while left:
        chunk = stream.read(min(CHUNK, left))
        if not chunk:
            raise SnapshotError(f"{name}: ends before its {size} bytes")
        digest.update(chunk)
        left -= len(chunk)
    if stream.read(HASH_SIZE + 1) != digest.digest():
        raise SnapshotError(
            f"{name}: its database does not match the sha256 at its end: the snapshot is damaged"
        )


def newest(directory: Path) -> Path:
    """The newest of k3s's snapshots in `directory` (by the time in its name); files being
    written (etcd's `.part`) or of other names are not snapshots."""
    found = []
    for path in directory.iterdir():
        match = NAME.match(path.name)
        if match and path.is_file() and not path.is_symlink():
            found.append((int(match["time"]), path.name, path))
    if not found:
        raise SnapshotError(f"{directory}: no etcd snapshot")
    return max(found)[2]


class RefusedError(Exception):
    """What the receiver answers a sender it turns away: an HTTP status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def authorized(header: str | None, token: str) -> bool:
    expected = f"Bearer {token}".encode()
    return hmac.compare_digest((header or "").encode(), expected)


def receive(
    root: Path,
    *,
    name: str,
    sha256: str,
    size: int,
    body: Readable,
    now: dt.datetime,
) -> tuple[Path, dt.datetime]:
    """Store one snapshot read from `body` as a complete snapshot under `root`; returns it
    and the time k3s took it. RefusedError (nothing is left behind) if anything is off."""
    try:
        taken = taken_at(name)
    except SnapshotError as error:
        raise RefusedError(400, str(error)) from None
    if taken > now + CLOCK_SKEW:
        raise RefusedError(400, f"{name} is dated {taken.isoformat()}, after now")
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise RefusedError(400, "X-Snapshot-Sha256 must be 64 lowercase hex digits")
    if not 0 < size <= MAX_SIZE:
        raise RefusedError(413, f"a snapshot of {size} bytes is refused (at most {MAX_SIZE})")
    old_umask = os.umask(0o077)
    try:
        with locked(root):
            # Two snapshots in one second (a retried Job) are both kept, a second apart.
            while (root / now.astimezone(dt.UTC).strftime(NAME_FORMAT)).exists():
                now += dt.timedelta(seconds=1)
            writer = SnapshotWriter(root, now)
            try:
                _copy(writer, name, body, size, sha256)
                check_snapshot(writer.path / name)
                final = writer.commit(
                    {
                        "kind": KIND,
                        "created": now.astimezone(dt.UTC).isoformat(),
                        "taken": taken.isoformat(),
                        "file": name,
                        "databases": [],
                    }
                )
            except SnapshotError as error:
                shutil.rmtree(writer.path, ignore_errors=True)
                raise RefusedError(422, str(error)) from None
            except BaseException:
                shutil.rmtree(writer.path, ignore_errors=True)
                raise
    finally:
        os.umask(old_umask)
    return final, taken


def _copy(writer: SnapshotWriter, name: str, body: Readable, size: int, sha256: str) -> None:
    with writer.create(name) as out:
        left = size
        while left:
            chunk = body.read(min(CHUNK, left))
            if not chunk:
                break
            out.write(chunk)
            left -= len(chunk)
    received = writer.files[name]
    if received["size"] != size:
        raise SnapshotError(f"{name}: the upload ended after {received['size']} of {size} bytes")
    if received["sha256"] != sha256:
        raise SnapshotError(f"{name}: arrived with sha256 {received['sha256']}, the sender sent {sha256}")


def check_contents(snapshot: Path, manifest: dict[str, Any]) -> None:
    """For `backup verify`: an etcd snapshot's one file is a whole etcd snapshot."""
    name = manifest.get("file")
    if not isinstance(name, str) or set(manifest["files"]) != {name}:
        raise SnapshotError(f"{snapshot}: an etcd snapshot lists exactly its one file")
    check_snapshot(member(snapshot, manifest, name))


def newest_taken(root: Path) -> dt.datetime | None:
    """When k3s took the newest snapshot stored under `root` (whatever order they came in)."""
    times = []
    for name in complete_snapshots(root):
        try:
            times.append(dt.datetime.fromisoformat(read_manifest(root / name)["taken"]))
        except (SnapshotError, KeyError, TypeError, ValueError):
            continue
    return max(times, default=None)
