"""Check a store entry against its recorded digest before a build reads it.

A tampered entry must not spread into the entries built from it. Hashing every
dependency before every build would cost as much as reading it twice, so what a check
found is remembered in `<store>/.checked/<entry>.json`: the recorded digest and the
lstat of the entry's top directory, its record and every path it lists (inode, size,
mode, mtime and ctime). While all of those are unchanged the entry is as it was when
checked; anything else hashes it again. ctime is in the key because a process can set
mtime back after a write but cannot set ctime; an added or removed file changes its
directory's times.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from builder.det.jsonfmt import canonical_json
from builder.errors import MeshseedError
from builder.store.store import ENTRY_RECORD, Store, StoredOutput

Stat = list[int]


def _stat(path: Path) -> Stat | None:
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return [info.st_ino, info.st_size, info.st_mode, info.st_mtime_ns, info.st_ctime_ns]


def _observed(stored: StoredOutput) -> dict[str, Stat | None]:
    paths = [".", ENTRY_RECORD, *(entry.path for entry in stored.entries)]
    return {relative: _stat(stored.path / relative) for relative in paths}


def _cached(store: Store, store_name: str) -> object:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(store.checked_path(store_name).read_text())
    return None


def _remember(store: Store, store_name: str, state: Mapping[str, object]) -> None:
    # Only a shortcut, so no fsync (a lost one means one more hash) and no error if it
    # cannot be written; the rename keeps a reader from seeing half of it.
    path = store.checked_path(store_name)
    with contextlib.suppress(OSError):
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as stream:
            stream.write(canonical_json(state, pretty=False).encode())
        Path(name).replace(path)


def remember_intact(store: Store, stored: StoredOutput) -> None:
    """Record that `stored` matches its record now (it was just committed)."""
    _remember(store, stored.path.name, {"digest": stored.digest, "stats": _observed(stored)})


def ensure_intact(store: Store, store_name: str) -> None:
    """Refuse an entry whose files no longer match its record (cheaply, when unchanged)."""
    try:
        stored = store.read(store_name)
    except (OSError, ValueError, KeyError):
        raise _corrupt(store_name, f"{ENTRY_RECORD} is missing or unreadable") from None
    # Taken before hashing: a change made meanwhile leaves a state that is hashed again.
    state = {"digest": stored.digest, "stats": _observed(stored)}
    if _cached(store, store_name) == state:
        return
    problem = store.verify(store_name)
    if problem is not None:
        raise _corrupt(store_name, problem)
    _remember(store, store_name, state)


def _corrupt(store_name: str, problem: str) -> MeshseedError:
    return MeshseedError(
        f"store entry {store_name} is corrupt: {problem}", hint="run `meshseed build --repair`"
    )
