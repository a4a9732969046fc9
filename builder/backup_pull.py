"""`meshseed backup pull`: copy new snapshots from the backup node to this machine.

Incremental (only snapshots not yet here), resumable (a file cut short is continued from
where it stopped, inside `<name>.partial`), and verified: a snapshot is renamed into place
only after every file matches the sha256 in its manifest. Then the local retention of
site.yaml applies, with the same rotation as on the node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backup_agent.rotation import Retention as Rules
from backup_agent.rotation import keep, rotate_tree
from backup_agent.snapshot import (
    MANIFEST,
    PARTIAL,
    SnapshotError,
    check_files,
    complete_snapshots,
    sha256_file,
    snapshot_time,
)

from builder.errors import MeshseedError
from builder.site.model import Retention
from builder.tools.ssh import SshTarget, ssh_output, ssh_stream

KINDS = ("couchdb", "mysql", "mongodb")
REMOTE_ROOT = "/var/lib/meshseed/backups"


@dataclass
class PullReport:
    copied: dict[str, list[str]] = field(default_factory=dict)
    present: dict[str, list[str]] = field(default_factory=dict)
    deleted: dict[str, list[str]] = field(default_factory=dict)


def remote_snapshots(target: SshTarget, directory: str) -> dict[str, Any]:
    """Complete snapshots in a remote directory, by name (none if it does not exist yet)."""
    listing = ssh_output(target, ["sh", "-c", 'test -d "$1" && ls -1 "$1" || true', "sh", directory])
    times = {name: snapshot_time(name) for name in listing.decode().split()}
    return {name: time for name, time in times.items() if time is not None}


def wanted(remote: dict[str, Any], local: dict[str, Any], rules: Rules) -> list[str]:
    """Remote snapshots to copy: those the local retention would keep, that are not here yet.

    Asking the retention first means a snapshot rotated out here is not copied again.
    """
    kept = keep([*remote.values(), *local.values()], rules)
    return sorted(name for name, time in remote.items() if time in kept and name not in local)


def pull(
    target: SshTarget, local: Path, retention: Retention, *, remote_root: str = REMOTE_ROOT
) -> PullReport:
    report = PullReport()
    rules = Rules(retention.daily, retention.weekly, retention.monthly)
    for kind in KINDS:
        directory = f"{remote_root}/{kind}"
        here = local / kind
        here.mkdir(parents=True, exist_ok=True)
        present = complete_snapshots(here)
        remote = remote_snapshots(target, directory)
        report.present[kind] = sorted(set(remote) & set(present))
        for name in wanted(remote, present, rules):
            pull_snapshot(target, f"{directory}/{name}", here / name)
            report.copied.setdefault(kind, []).append(name)
        _, deleted = rotate_tree(here, rules)
        if deleted:
            report.deleted[kind] = deleted
    return report


def pull_snapshot(target: SshTarget, remote: str, final: Path) -> None:
    partial = final.with_name(final.name + PARTIAL)
    partial.mkdir(parents=True, exist_ok=True)
    manifest_bytes = ssh_output(target, ["cat", f"{remote}/{MANIFEST}"])
    try:
        manifest: dict[str, Any] = json.loads(manifest_bytes)
        files = manifest["files"]
    except (ValueError, KeyError, TypeError):
        raise MeshseedError(f"{remote}/{MANIFEST} on the backup node is not a snapshot manifest") from None
    for relative, expected in sorted(files.items()):
        if ".." in Path(relative).parts or Path(relative).is_absolute():
            raise MeshseedError(f"{remote}/{MANIFEST} names a file outside the snapshot: {relative}")
        fetch_file(target, f"{remote}/{relative}", partial / relative, expected)
    (partial / MANIFEST).write_bytes(manifest_bytes)
    try:
        check_files(partial, manifest)
    except SnapshotError as error:
        raise MeshseedError(f"the copy of {remote} does not match its manifest: {error}") from None
    partial.rename(final)


def fetch_file(target: SshTarget, remote: str, path: Path, expected: dict[str, Any]) -> None:
    """Copy one file, continuing a copy that was cut short; refetch one that went wrong."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = path.stat().st_size if path.exists() else 0
    if size > expected["size"] or (size == expected["size"] and sha256_file(path) != expected["sha256"]):
        path.unlink()
        size = 0
    if size == expected["size"]:
        return
    with path.open("ab") as out:
        # `tail -c +N` starts at byte N (1-based): the first byte we do not have yet.
        ssh_stream(target, ["tail", "-c", f"+{size + 1}", remote], out)
