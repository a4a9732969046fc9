"""`meshseed backup pull`: copy new snapshots from the backup node to this machine.

Incremental (only snapshots not yet here), resumable (a file cut short is continued from
where it stopped, inside `<name>.partial`), and verified: a snapshot is renamed into place
only after every file matches the sha256 in its manifest. Then the local retention of
site.yaml applies, with the same rotation as on the node.

The backup node is not trusted: whoever controls it chooses every name, manifest and byte
it serves, and must not be able to make this machine lose its own copies. So:

- a snapshot named after now (beyond CLOCK_SKEW) is refused, and the pull fails once
  the rest is copied: such names would outrank every genuine copy in the rotation;
- a snapshot older than the newest local copy is copied only into a gap of the local
  retention, never when it would push a local copy out (a node could otherwise date one
  a minute after each genuine snapshot, in the same day, and displace them all). Newer
  snapshots rotate older copies out as new backups do, so no faster than real time
  passes, since none can be dated after now;
- the local rotation counts only local copies: a complete snapshot directory with its
  own manifest, dated no later than now. Anything else there is left alone;
- the manifest's sizes bound what is written: a file that runs longer is cut off there;
- the node's listing and manifest are bounded too, and a full disk is a clean error.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup_agent.contents import check_references
from backup_agent.rotation import Retention as Rules
from backup_agent.rotation import keep
from backup_agent.snapshot import (
    MANIFEST,
    PARTIAL,
    SnapshotError,
    check_files,
    check_manifest,
    complete_snapshots,
    locked,
    read_manifest,
    sha256_file,
    snapshot_time,
)

from builder.errors import MeshseedError
from builder.site.model import Retention
from builder.tools.ssh import OutputTooLongError, SshTarget, ssh_output, ssh_stream

log = logging.getLogger("meshseed.backup")

KINDS = ("couchdb", "mysql", "mongodb", "garage", "etcd")
REMOTE_ROOT = "/var/lib/meshseed/backups"
# How far ahead of this machine's clock the node's may run before its names are refused.
CLOCK_SKEW = dt.timedelta(hours=1)
# A listing line is a 16-character name; a manifest entry about 170 bytes per file.
LISTING_LIMIT = 16 << 20
MANIFEST_LIMIT = 256 << 20


@dataclass
class PullReport:
    copied: dict[str, list[str]] = field(default_factory=dict)
    present: dict[str, list[str]] = field(default_factory=dict)
    deleted: dict[str, list[str]] = field(default_factory=dict)
    refused: dict[str, list[str]] = field(default_factory=dict)


def remote_snapshots(target: SshTarget, directory: str) -> dict[str, dt.datetime]:
    """Complete snapshots in a remote directory, by name (none if it does not exist yet)."""
    listing = ssh_output(
        target, ["sh", "-c", 'test -d "$1" && ls -1 "$1" || true', "sh", directory], limit=LISTING_LIMIT
    )
    times = {name: snapshot_time(name) for name in listing.decode(errors="replace").split()}
    return {name: time for name, time in times.items() if time is not None}


def local_copies(here: Path, now: dt.datetime) -> dict[str, dt.datetime]:
    """The local copies the retention counts, by name: complete snapshots with a manifest
    of their own name, dated no later than now (+ CLOCK_SKEW)."""
    copies = {}
    for name, time in complete_snapshots(here).items():
        with contextlib.suppress(SnapshotError):
            if time <= now + CLOCK_SKEW and read_manifest(here / name).get("snapshot") == name:
                copies[name] = time
    return copies


def to_copy(remote: dict[str, dt.datetime], local: dict[str, dt.datetime], rules: Rules) -> list[str]:
    """Remote snapshots to copy: those the local retention would keep, without letting a
    snapshot older than the newest local copy push out any local copy.

    Asking the retention first means a snapshot rotated out here is not copied again.
    """
    remote = {name: time for name, time in remote.items() if name not in local}
    newest = max(local.values(), default=None)
    newer = {name: time for name, time in remote.items() if newest is None or time > newest}
    kept = keep([*local.values(), *newer.values()], rules)
    chosen = {name: time for name, time in newer.items() if time in kept}
    kept = keep([*local.values(), *chosen.values()], rules)
    older = sorted(((time, name) for name, time in remote.items() if name not in newer), reverse=True)
    for time, name in older:
        trial = keep([*local.values(), *chosen.values(), time], rules)
        if time in trial and kept <= trial:
            chosen[name] = time
            kept = trial
    return sorted(chosen)


def rotate(here: Path, rules: Rules, now: dt.datetime) -> list[str]:
    """Apply the local retention to the local copies; the names deleted."""
    with locked(here):
        copies = local_copies(here, now)
        kept = keep(copies.values(), rules)
        deleted = sorted(name for name, time in copies.items() if time not in kept)
        for name in deleted:
            shutil.rmtree(here / name)
    return deleted


def pull(
    target: SshTarget,
    local: Path,
    retention: Retention,
    *,
    remote_root: str = REMOTE_ROOT,
    now: dt.datetime | None = None,
) -> PullReport:
    report = PullReport()
    rules = Rules(retention.daily, retention.weekly, retention.monthly)
    now = now or dt.datetime.now(dt.UTC)
    for kind in KINDS:
        directory = f"{remote_root}/{kind}"
        here = local / kind
        with writing(here, f"{kind} snapshots"):
            here.mkdir(parents=True, exist_ok=True)
        copies = local_copies(here, now)
        strangers = set(complete_snapshots(here)) - set(copies)
        for name in sorted(strangers):
            log.warning("%s: not a complete snapshot dated before now; left alone, not counted", here / name)
        offered = remote_snapshots(target, directory)
        if refused := sorted(name for name, time in offered.items() if time > now + CLOCK_SKEW):
            report.refused[kind] = refused
        remote = {n: time for n, time in offered.items() if n not in refused and n not in strangers}
        report.present[kind] = sorted(set(remote) & set(copies))
        for name in to_copy(remote, copies, rules):
            with writing(here, f"{kind}/{name}"):
                pull_snapshot(target, f"{directory}/{name}", here / name)
            report.copied.setdefault(kind, []).append(name)
        if deleted := rotate(here, rules, now):
            report.deleted[kind] = deleted
    return report


@contextlib.contextmanager
def writing(directory: Path, what: str) -> Iterator[None]:
    """Turn a failure to write here (a full disk above all) into a clear error."""
    try:
        yield
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise MeshseedError(
                f"no space left on {_mount_point(directory)} while pulling {what} into {directory}",
                hint="free some space and pull again: the copy continues where it stopped",
            ) from None
        raise MeshseedError(
            f"{error.filename or directory}: {error.strerror or error} while pulling {what}"
        ) from None


def _mount_point(directory: Path) -> Path:
    path = directory.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def pull_snapshot(target: SshTarget, remote: str, final: Path) -> None:
    partial = final.with_name(final.name + PARTIAL)
    partial.mkdir(parents=True, exist_ok=True)
    where = f"{remote}/{MANIFEST} on the backup node"
    try:
        manifest_bytes = ssh_output(target, ["cat", f"{remote}/{MANIFEST}"], limit=MANIFEST_LIMIT)
    except OutputTooLongError:
        raise MeshseedError(f"{where} is larger than {MANIFEST_LIMIT >> 20} MiB; refused") from None
    manifest = parse_manifest(manifest_bytes, where, final.name)
    for relative, expected in sorted(manifest["files"].items()):
        fetch_file(target, f"{remote}/{relative}", partial / relative, expected)
    (partial / MANIFEST).write_bytes(manifest_bytes)
    try:
        check_files(partial, manifest)
        check_references(partial, manifest)
    except SnapshotError as error:
        raise MeshseedError(f"the copy of {remote} does not match its manifest: {error}") from None
    partial.rename(final)


def parse_manifest(data: bytes, where: str, name: str) -> dict[str, Any]:
    """The node's manifest of snapshot `name`, once it is one: every size and path in it
    decides what is written here."""
    try:
        manifest = check_manifest(json.loads(data), where)
    except (ValueError, RecursionError):
        raise MeshseedError(f"{where} is not a snapshot manifest") from None
    except SnapshotError as error:
        raise MeshseedError(str(error)) from None
    if manifest.get("snapshot") != name:
        raise MeshseedError(f"{where} is the manifest of {manifest.get('snapshot')!r}, not of {name}")
    return manifest


def fetch_file(target: SshTarget, remote: str, path: Path, expected: dict[str, Any]) -> None:
    """Copy one file, continuing a copy that was cut short; refetch one that went wrong.
    Never more bytes than the manifest names: a node that sends more is cut off there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:  # creates the file, so that an empty one is copied too
        size = os.fstat(out.fileno()).st_size
        if size > expected["size"] or (size == expected["size"] and sha256_file(path) != expected["sha256"]):
            out.truncate(0)
            size = 0
        if size == expected["size"]:
            return
        # `tail -c +N` starts at byte N (1-based): the first byte we do not have yet.
        try:
            ssh_stream(target, ["tail", "-c", f"+{size + 1}", remote], out, limit=expected["size"] - size)
        except OutputTooLongError:
            raise MeshseedError(
                f"{remote} on the backup node sent more than the {expected['size']} bytes its manifest"
                " names; cut off there (has the node been tampered with?)"
            ) from None
