"""The one way into images.lock: read it, check what the caller relies on, return it.

Build, `lock --check`, fetch and publish all come through `load_lock`, so a stale lock is
refused the same way everywhere, every stale entry named at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from builder.errors import Problem
from builder.images.spec import IMAGES_DIR, image_names
from builder.lock.check import check_debian, check_lock, check_own_names, stale_lock_error
from builder.lock.disk_spec import DISK_SPEC
from builder.lock.file import read_lock
from builder.lock.model import DEFAULT_LOCK, EMPTY_LOCK, Lock
from builder.lock.requests import DebianRequest, disk_request, image_requests
from builder.lock.upstream import DEFAULT_UPSTREAM, load_upstream


@dataclass(frozen=True)
class LockFiles:
    """Where the lock is, and the files it is checked against."""

    lock: Path = DEFAULT_LOCK
    upstream: Path = DEFAULT_UPSTREAM
    images_dir: Path = IMAGES_DIR
    disk_spec: Path = DISK_SPEC


class UpstreamPart(Enum):
    """How much the caller relies on the lock's upstream part (k3s, Mycelium, upstream images)."""

    # Fetching and air-gap bundles need it pinned and current.
    REQUIRED = "required"
    # A plain build works without it (seeds set up the base system only), so a missing
    # lock reads as empty; once pinned it must be current.
    IF_PINNED = "if pinned"
    # Publishing describes what was built with the lock as it was; upstream.yaml may have moved on.
    UNCHECKED = "unchecked"


def load_lock(files: LockFiles, *, upstream: UpstreamPart, debian: bool = False, disks: bool = False) -> Lock:
    """images.lock, refused when stale in a part the caller relies on. With `debian`, our
    images' Debian closures must be pinned for their current image.yaml; with `disks`, the
    nodes' disk closure for disks/node.yaml."""
    if upstream is UpstreamPart.IF_PINNED and not debian and not disks and not files.lock.exists():
        return EMPTY_LOCK
    lock = read_lock(files.lock)
    problems: list[Problem] = []
    if upstream is UpstreamPart.REQUIRED or (upstream is UpstreamPart.IF_PINNED and lock.pins_upstream):
        described = load_upstream(files.upstream)
        check_own_names(described, image_names(files.images_dir), files.upstream)
        problems += check_lock(described, lock, files.lock)
    requests: dict[str, DebianRequest] = {}
    if debian:
        requests |= image_requests(files.images_dir)
    if disks:
        requests |= disk_request(files.disk_spec)
    problems += check_debian(requests, lock, files.lock)
    if problems:
        raise stale_lock_error(problems, files.lock)
    return lock
