"""images/upstream.yaml (what to pin) and images.lock (what it resolved to).

The lock is versioned canonical JSON, written only by `meshseed lock`. It records the
sha256 of the upstream.yaml it came from, so a changed upstream.yaml makes it stale, and
`meshseed lock --check` says so, naming the entry. Everything that uses the lock reads it
through `load_lock`.
"""

from builder.lock.check import check_debian, check_lock, stale_lock_error
from builder.lock.file import read_lock, write_lock
from builder.lock.load import LockFiles, UpstreamPart, load_lock
from builder.lock.model import DEFAULT_LOCK, EMPTY_LOCK, LOCK_VERSION, Lock, LockedFile, LockedImage
from builder.lock.upstream import DEFAULT_UPSTREAM, REQUIRED_PLATFORM, Upstream, load_upstream

__all__ = [
    "DEFAULT_LOCK",
    "DEFAULT_UPSTREAM",
    "EMPTY_LOCK",
    "LOCK_VERSION",
    "REQUIRED_PLATFORM",
    "Lock",
    "LockFiles",
    "LockedFile",
    "LockedImage",
    "Upstream",
    "UpstreamPart",
    "check_debian",
    "check_lock",
    "load_lock",
    "load_upstream",
    "read_lock",
    "stale_lock_error",
    "write_lock",
]
