"""Snapshots on disk: a directory named by its UTC time, complete only once renamed.

A snapshot is written as `<time>.partial`, with the backup tree's lock held; every file
is hashed as it is written, the manifest lists them all, the whole directory is hashed
again, and only then is it renamed to `<time>`. A run that is killed leaves a `.partial`
directory, which never looks complete and is removed by the next run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

# Shared by every kind of snapshot (couchdb here; mysql and mongodb from their CronJobs).
FORMAT = "meshseed-backup/1"
MANIFEST = "manifest.json"
PARTIAL = ".partial"
LOCK = ".lock"
NAME_FORMAT = "%Y%m%dT%H%M%SZ"
NAME = re.compile(r"^\d{8}T\d{6}Z$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SnapshotError(Exception):
    """A snapshot is missing, incomplete or does not match its manifest."""


def snapshot_time(name: str) -> dt.datetime | None:
    """The UTC time a complete snapshot's name gives, or None for anything else."""
    if not NAME.match(name):
        return None
    return dt.datetime.strptime(name, NAME_FORMAT).replace(tzinfo=dt.UTC)


def complete_snapshots(root: Path) -> dict[str, dt.datetime]:
    """Complete snapshots under `root` (`.partial` ones never count), by name."""
    if not root.is_dir():
        return {}
    found = {path.name: snapshot_time(path.name) for path in root.iterdir() if path.is_dir()}
    return {name: time for name, time in found.items() if time is not None}


@contextlib.contextmanager
def locked(root: Path, *, wait: bool = True) -> Iterator[None]:
    """Hold the backup tree's lock: one writer or rotator at a time."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise SnapshotError(f"{root} is locked by another backup or rotation") from None
        yield


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class HashingWriter:
    """A binary file that hashes and counts what is written to it."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()


class SnapshotWriter:
    """Builds one snapshot under `root`; `commit` makes it complete."""

    def __init__(self, root: Path, now: dt.datetime) -> None:
        self.name = now.astimezone(dt.UTC).strftime(NAME_FORMAT)
        self.final = root / self.name
        self.path = root / (self.name + PARTIAL)
        if self.final.exists():
            raise SnapshotError(f"{self.final} exists already")
        for stale in root.glob("*" + PARTIAL):
            # Left by a killed run; the lock we hold says no one is writing it.
            shutil.rmtree(stale)
        self.path.mkdir(parents=True)
        self.files: dict[str, dict[str, Any]] = {}

    @contextlib.contextmanager
    def create(self, relative: str) -> Iterator[HashingWriter]:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as handle:
            writer = HashingWriter(handle)
            yield writer
            handle.flush()
            os.fsync(handle.fileno())
        self.files[relative] = {"sha256": writer.sha256.hexdigest(), "size": writer.size}

    def store_blob(self, directory: str, chunks: Iterable[bytes]) -> str:
        """Store a stream under directory/<sha256> (once, however often it recurs)."""
        folder = self.path / directory
        folder.mkdir(parents=True, exist_ok=True)
        incoming = folder / ".incoming"
        digest, size = hashlib.sha256(), 0
        with incoming.open("wb") as handle:
            for chunk in chunks:
                digest.update(chunk)
                size += len(chunk)
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        relative = f"{directory}/{digest.hexdigest()}"
        if relative in self.files:
            incoming.unlink()
        else:
            incoming.rename(self.path / relative)
            self.files[relative] = {"sha256": digest.hexdigest(), "size": size}
        return relative

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Write the manifest, check every file against it, and rename into place."""
        document = {
            "format": FORMAT,
            "snapshot": self.name,
            **manifest,
            "files": dict(sorted(self.files.items())),
        }
        data = json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"
        (self.path / MANIFEST).write_bytes(data)
        check_files(self.path, document)
        _fsync_dir(self.path)
        self.path.rename(self.final)
        _fsync_dir(self.final.parent)
        return self.final


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def read_manifest(snapshot: Path) -> dict[str, Any]:
    if snapshot.name.endswith(PARTIAL):
        raise SnapshotError(f"{snapshot} is incomplete (a backup was interrupted)")
    path = snapshot / MANIFEST
    if path.is_symlink():
        raise SnapshotError(f"{path} is a symbolic link; a snapshot holds only its own files")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise SnapshotError(f"{snapshot}: no {MANIFEST}; not a complete snapshot") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise SnapshotError(f"{path}: damaged: {error}") from None
    return check_manifest(manifest, str(path))


def check_manifest(manifest: Any, where: str) -> dict[str, Any]:
    """`manifest` if it is a well-formed manifest: every listed file a safe relative path
    with a sha256 and a size, every database's file one of them. Whoever wrote the snapshot
    wrote the manifest too, so nothing in it is trusted before this."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise SnapshotError(f"{where}: not a {FORMAT} manifest")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise SnapshotError(f"{where}: files: not an object")
    for relative, entry in files.items():
        if not safe_relative(relative):
            raise SnapshotError(f"{where}: files: {relative!r} is not a path inside the snapshot")
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and SHA256.match(entry["sha256"])
            and type(entry.get("size")) is int
            and entry["size"] >= 0
        ):
            raise SnapshotError(f"{where}: files: {relative}: needs a sha256 (64 hex digits) and a size")
    databases = manifest.get("databases", [])
    if not isinstance(databases, list):
        raise SnapshotError(f"{where}: databases: not a list")
    for number, entry in enumerate(databases):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)):
            raise SnapshotError(f"{where}: databases[{number}]: needs a name")
        if entry.get("file") not in files:
            raise SnapshotError(
                f"{where}: databases[{number}] ({entry['name']}): file {entry.get('file')!r}"
                " is not one of the snapshot's files"
            )
    return manifest


def safe_relative(relative: object) -> bool:
    """Whether `relative` names a file below a snapshot's directory (and not its manifest)."""
    if not isinstance(relative, str) or not relative or relative.startswith("/") or "\0" in relative:
        return False
    parts = relative.split("/")
    return relative != MANIFEST and all(part not in ("", ".", "..") for part in parts)


def member(snapshot: Path, manifest: dict[str, Any], relative: object) -> Path:
    """The path of one of the snapshot's files, for reading: only a file the manifest lists
    (so verify has hashed it), and only a regular file reached without a symbolic link, so
    that no name in a snapshot reads anything outside it."""
    if not safe_relative(relative) or relative not in manifest["files"]:
        raise SnapshotError(f"{snapshot}: {relative!r} is not one of the snapshot's files")
    path = snapshot / str(relative)
    try:
        inside = path.resolve(strict=True) == snapshot.resolve(strict=True) / str(relative)
        regular = stat.S_ISREG(path.lstat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        raise SnapshotError(f"{snapshot}: {relative} is missing") from None
    if not inside:
        raise SnapshotError(f"{snapshot}: {relative} leads outside the snapshot (a symbolic link)")
    if not regular:
        raise SnapshotError(f"{snapshot}: {relative} is not a regular file")
    return path


def check_files(snapshot: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists is there, with its size and sha256, and nothing else:
    no unlisted file, and no symbolic link or other special file anywhere."""
    present: set[str] = set()
    for directory, subdirectories, names in os.walk(snapshot):
        for name in [*subdirectories, *names]:
            path = Path(directory) / name
            mode = path.lstat().st_mode
            relative = path.relative_to(snapshot).as_posix()
            if stat.S_ISLNK(mode):
                raise SnapshotError(f"{snapshot}: {relative} is a symbolic link")
            if stat.S_ISREG(mode):
                present.add(relative)
            elif not stat.S_ISDIR(mode):
                raise SnapshotError(f"{snapshot}: {relative} is not a regular file")
    present.discard(MANIFEST)
    listed = set(manifest["files"])
    if present - listed:
        raise SnapshotError(f"{snapshot}: files not in the manifest: {', '.join(sorted(present - listed))}")
    for relative, expected in sorted(manifest["files"].items()):
        path = member(snapshot, manifest, relative)
        size = path.stat().st_size
        if size != expected["size"]:
            raise SnapshotError(
                f"{snapshot}: {relative} has {size} bytes, the manifest says {expected['size']}"
            )
        found = sha256_file(path)
        if found != expected["sha256"]:
            raise SnapshotError(
                f"{snapshot}: {relative} has sha256 {found}, the manifest says {expected['sha256']}"
            )


def write_metric(directory: Path, kind: str, when: dt.datetime) -> None:
    """The last success time, for node-exporter's textfile collector (written atomically)."""
    directory.mkdir(parents=True, exist_ok=True)
    line = f'meshseed_backup_last_success_timestamp_seconds{{kind="{kind}"}} {int(when.timestamp())}\n'
    temporary = directory / f".{kind}.prom.tmp"
    temporary.write_text(line)
    temporary.replace(directory / f"{kind}.prom")
