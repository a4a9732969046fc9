"""The content-addressed store: `<root>/<key>-<name>/` holds each derivation's output.

An output is built in `<root>/.tmp/`, described in `.entry.json` (its tree digest), made
read-only and then renamed into place; the rename is the commit, so a build killed at
any moment leaves either no entry or a whole one. Builders of one key take a lock on it,
so two builds on one store never build the same thing twice at once; `gc` takes the
store lock exclusively, builds take it shared.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from builder.det.files import write_atomically
from builder.det.jsonfmt import canonical_json
from builder.errors import MeshseedError
from builder.store.blobs import BlobStore
from builder.store.tree import Entry, ModeClass, scan, set_modes, tree_digest

DEFAULT_STORE = Path(".meshseed/store")
ENTRY_RECORD = ".entry.json"
_TMP, _LOCKS, _ROOTS, _CHECKED = ".tmp", ".locks", ".roots", ".checked"
_SPACE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def storage_error(error: OSError, doing: str) -> MeshseedError:
    """Turn a file-system failure into one clear sentence, saying what was being done."""
    where = f" ({error.filename})" if error.filename else ""
    if error.errno in _SPACE_ERRORS:
        reason = "no space left (disk full, quota or file size limit)"
    elif error.errno == errno.EROFS:
        reason = "read-only file system"
    elif error.errno in {errno.EACCES, errno.EPERM}:
        reason = "permission denied"
    else:
        reason = error.strerror or str(error)
    return MeshseedError(f"{doing}: {reason}{where}", hint="the store is unchanged; fix this and build again")


@dataclass(frozen=True)
class StoredOutput:
    """A committed entry: where it is, and the digest and listing recorded with it."""

    path: Path
    digest: str
    entries: tuple[Entry, ...]


def _thaw_and_remove(path: Path) -> None:
    """Delete a tree the store made read-only. A symlink is removed itself and never
    followed: chmod would reach through it to whatever it names, outside the store."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
        return
    if not path.exists():
        return
    # rglob does not descend into symlinked directories; the filter keeps chmod off them.
    for directory in [path, *(p for p in path.rglob("*") if not p.is_symlink() and p.is_dir())]:
        with contextlib.suppress(OSError):
            directory.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = BlobStore(root)

    def path_of(self, store_name: str) -> Path:
        return self.root / store_name

    def checked_path(self, store_name: str) -> Path:
        """Where `store.intact` remembers what it last found the entry to be."""
        return self.root / _CHECKED / f"{store_name}.json"

    def prepare(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The store holds seeds with secrets: nobody else may look inside.
            self.root.chmod(0o700)
            for sub in (_TMP, _LOCKS, _ROOTS, _CHECKED, ".blobs"):
                (self.root / sub).mkdir(exist_ok=True)
                # gc empties .tmp and prunes .blobs: through a symlink that would be another tree.
                if (self.root / sub).is_symlink():
                    raise MeshseedError(
                        f"{self.root / sub}: is a symlink; refusing to use the store",
                        hint="the store's own directories must be real directories inside it",
                    )
        except OSError as error:
            raise storage_error(error, f"cannot prepare the store at {self.root}") from None

    @contextlib.contextmanager
    def _flock(self, path: Path, kind: int) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, kind)
            yield
        finally:
            os.close(fd)

    def shared(self) -> contextlib.AbstractContextManager[None]:
        """Held by builds, so that gc never removes an entry a build is about to use."""
        return self._flock(self.root / _LOCKS / "store.lock", fcntl.LOCK_SH)

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        return self._flock(self.root / _LOCKS / "store.lock", fcntl.LOCK_EX)

    def key_lock(self, key: str) -> contextlib.AbstractContextManager[None]:
        return self._flock(self.root / _LOCKS / f"{key}.lock", fcntl.LOCK_EX)

    def has(self, store_name: str) -> bool:
        return (self.path_of(store_name) / ENTRY_RECORD).is_file()

    def read(self, store_name: str) -> StoredOutput:
        path = self.path_of(store_name)
        record = json.loads((path / ENTRY_RECORD).read_text())
        entries = tuple(
            Entry(e["path"], ModeClass(e["mode"]), e["sha256"], e["size"]) for e in record["entries"]
        )
        return StoredOutput(path, record["digest"], entries)

    def new_build_dir(self, store_name: str) -> Path:
        """A fresh directory to build into; removes leftovers of killed builds of this key."""
        for stale in (self.root / _TMP).glob(f"{store_name}.*"):
            _thaw_and_remove(stale)
        return Path(tempfile.mkdtemp(prefix=f"{store_name}.", dir=self.root / _TMP))

    def commit(self, store_name: str, built: Path, known: Mapping[str, str] | None = None) -> StoredOutput:
        """Describe, freeze and rename a finished build into place."""
        entries = scan(built, known=known or {})
        digest = tree_digest(entries)
        record = {
            "name": store_name,
            "digest": digest,
            "entries": [
                {"path": e.path, "mode": e.mode.value, "sha256": e.sha256, "size": e.size} for e in entries
            ],
        }
        (built / ENTRY_RECORD).write_text(canonical_json(record, pretty=False))
        set_modes(built, frozen=True)
        # Moving a directory to another parent needs it writable (for its ".." link),
        # so the top directory is frozen only once it is in place.
        built.chmod(0o700)
        target = self.path_of(store_name)
        if target.exists():
            # Only after a repair removed a corrupt entry can one be in the way here.
            self.remove(store_name)
        built.rename(target)
        target.chmod(ModeClass.DIRECTORY.frozen_mode())
        return StoredOutput(target, digest, tuple(entries))

    def discard(self, path: Path) -> None:
        _thaw_and_remove(path)

    def entries(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith("."))

    def verify(self, store_name: str) -> str | None:
        """None if the entry matches its record, else what is wrong with it."""
        path = self.path_of(store_name)
        try:
            stored = self.read(store_name)
        except (OSError, ValueError, KeyError):
            return f"{ENTRY_RECORD} is missing or unreadable"
        actual = scan(path, skip=frozenset({ENTRY_RECORD}))
        if tree_digest(actual) == stored.digest:
            return None
        recorded = {e.path: e for e in stored.entries}
        found = {e.path: e for e in actual}
        for name in sorted(recorded.keys() | found.keys()):
            if name not in found:
                return f"{name} is missing"
            if name not in recorded:
                return f"{name} was added"
            if recorded[name] != found[name]:
                was, now = recorded[name], found[name]
                return (
                    f"{name} changed (recorded {was.mode} sha256:{was.sha256}, "
                    f"found {now.mode} sha256:{now.sha256})"
                )
        return f"its digest is not {stored.digest}"

    def remove(self, store_name: str) -> None:
        """Take the entry out of the store at once (a rename), then delete it at leisure:
        a deletion cut short must never leave a partial entry that still looks whole."""
        path = self.path_of(store_name)
        self.checked_path(store_name).unlink(missing_ok=True)
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
            return
        if not path.exists():
            return
        path.chmod(0o700)
        doomed = Path(tempfile.mkdtemp(prefix=f"{store_name}.", suffix=".dead", dir=self.root / _TMP))
        path.rename(doomed / "entry")
        _thaw_and_remove(doomed)

    def add_root(self, result: Path, store_names: list[str]) -> None:
        """Record that `result` (a dist/ directory) uses these entries; gc keeps them."""
        name = hashlib.sha256(str(result.resolve()).encode()).hexdigest()[:32]
        record = {"result": str(result.resolve()), "entries": sorted(store_names)}
        write_atomically(self.root / _ROOTS / f"{name}.json", canonical_json(record).encode())

    def live_entries(self) -> set[str]:
        """Entries named by a root whose result still exists; stale roots are dropped."""
        live: set[str] = set()
        for root_file in sorted((self.root / _ROOTS).glob("*.json")):
            try:
                record = json.loads(root_file.read_text())
            except (OSError, ValueError):
                root_file.unlink(missing_ok=True)
                continue
            if (Path(record["result"]) / "build.json").is_file():
                live.update(record["entries"])
            else:
                root_file.unlink(missing_ok=True)
        return live

    def collect_garbage(self) -> tuple[list[str], int]:
        """Remove entries no result refers to, and leftovers of killed builds."""
        with self.exclusive():
            live = self.live_entries()
            dead = [name for name in self.entries() if name not in live]
            freed = 0
            for name in dead:
                path = self.path_of(name)
                # Hard links to shared blobs are counted when the blob itself goes.
                if not path.is_symlink():
                    freed += sum(
                        info.st_size for info in (p.lstat() for p in path.rglob("*")) if info.st_nlink == 1
                    )
                self.remove(name)
            for leftover in (self.root / _TMP).iterdir():
                _thaw_and_remove(leftover)
            kept = set(self.entries())
            for checked in (self.root / _CHECKED).iterdir():
                if checked.name.removesuffix(".json") not in kept:
                    checked.unlink()
            for lock in (self.root / _LOCKS).glob("*.lock"):
                if lock.name != "store.lock":
                    lock.unlink(missing_ok=True)
            freed += self.blobs.collect_garbage()
        return dead, freed
