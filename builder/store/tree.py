"""Describe an output tree by content, and freeze or thaw it on disk.

A tree's digest covers each path, its kind, its mode class and its content hash, in
sorted order, so two trees with the same digest are the same artifact. Mode classes
replace raw permission bits, which the umask and the store's read-only state would
otherwise leak into the digest.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from builder.det.jsonfmt import canonical_json

_CHUNK = 1 << 20


class ModeClass(StrEnum):
    """What a file's permissions say, without the bits that vary between machines."""

    REGULAR = "regular"  # 0644 in dist/
    EXECUTABLE = "executable"  # 0755
    PRIVATE = "private"  # 0600: holds secrets
    DIRECTORY = "directory"
    SYMLINK = "symlink"

    @classmethod
    def of(cls, mode: int) -> ModeClass:
        if stat.S_ISDIR(mode):
            return cls.DIRECTORY
        if stat.S_ISLNK(mode):
            return cls.SYMLINK
        if mode & stat.S_IXUSR:
            return cls.EXECUTABLE
        if not mode & (stat.S_IRGRP | stat.S_IROTH):
            return cls.PRIVATE
        return cls.REGULAR

    def dist_mode(self) -> int:
        return {"regular": 0o644, "executable": 0o755, "private": 0o600, "directory": 0o755}.get(self, 0o777)

    def frozen_mode(self) -> int:
        return {"regular": 0o444, "executable": 0o555, "private": 0o400, "directory": 0o555}.get(self, 0o777)


@dataclass(frozen=True)
class Entry:
    """One path of a tree: relative POSIX path, mode class and sha256 (of link text for links)."""

    path: str
    mode: ModeClass
    sha256: str
    size: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def walk(root: Path, *, skip: frozenset[str] = frozenset()) -> Iterator[Path]:
    """Every path under `root`, in byte order of the relative path; never `root` itself."""
    for path in sorted(root.rglob("*"), key=lambda p: p.relative_to(root).as_posix().encode()):
        if path.relative_to(root).parts[0] not in skip:
            yield path


def scan(
    root: Path, *, skip: frozenset[str] = frozenset(), known: Mapping[str, str] | None = None
) -> list[Entry]:
    """Describe every path under `root`; `known` gives sha256s already computed by the build."""
    known = known or {}
    entries = []
    for path in walk(root, skip=skip):
        info = path.lstat()
        mode = ModeClass.of(info.st_mode)
        relative = path.relative_to(root).as_posix()
        if mode is ModeClass.DIRECTORY:
            entries.append(Entry(relative, mode, "", 0))
        elif mode is ModeClass.SYMLINK:
            target = str(path.readlink()).encode()
            entries.append(Entry(relative, mode, hashlib.sha256(target).hexdigest(), len(target)))
        elif stat.S_ISREG(info.st_mode):
            sha256 = known.get(relative) or file_sha256(path)
            entries.append(Entry(relative, mode, sha256, info.st_size))
        else:
            raise ValueError(f"{path}: an output may hold only files, directories and symlinks")
    return entries


def tree_digest(entries: list[Entry]) -> str:
    listing = [[e.path, e.mode.value, e.sha256, e.size] for e in entries]
    return "sha256:" + hashlib.sha256(canonical_json(listing, pretty=False).encode()).hexdigest()


def set_modes(root: Path, *, frozen: bool) -> None:
    """Give every path its frozen (read-only) or its dist/ permission bits; deepest first."""
    paths = [*walk(root), root]
    for path in reversed(paths):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        mode = ModeClass.of(info.st_mode)
        path.chmod(mode.frozen_mode() if frozen else mode.dist_mode())
