"""Large content-addressed files shared by store entries: `<store>/.blobs/sha256/<hex>`.

Image layers are the same bytes in many images, so they are kept once here and hard
linked into each entry that holds them. A blob is downloaded into `.blobs/partial/`
(where a later attempt can resume it), verified, frozen and renamed into place. Blobs
no entry links to any more (link count 1) are removed by `store gc`.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path

from builder.digest import Digest, hex_part

_DIR = ".blobs"


class BlobStore:
    def __init__(self, store_root: Path) -> None:
        self.root = store_root / _DIR
        self.partial_dir = self.root / "partial"

    def path_of(self, digest: Digest) -> Path:
        return self.root / "sha256" / hex_part(digest)

    def has(self, digest: Digest) -> bool:
        return self.path_of(digest).is_file()

    def ensure(self, digest: Digest, download: Callable[[Path], None]) -> Path:
        """The blob's path, calling `download(partial)` first if it is not here yet.

        `download` must leave exactly the verified blob in `partial` or raise. A lock per
        digest keeps two builds from downloading the same blob at once.
        """
        target = self.path_of(digest)
        if target.is_file():
            return target
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        hexdigest = hex_part(digest)
        fd = os.open(self.partial_dir / f"{hexdigest}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not target.is_file():
                partial = self.partial_dir / hexdigest
                download(partial)
                partial.chmod(0o444)
                partial.rename(target)
        finally:
            os.close(fd)
        return target

    def collect_garbage(self) -> int:
        """Remove blobs that no store entry links to; returns the bytes freed."""
        freed = 0
        if not self.root.is_dir():
            return 0
        for algorithm in self.root.iterdir():
            # Through a symlinked directory gc would delete files wherever it points: it goes itself.
            if algorithm.is_symlink():
                algorithm.unlink()
                continue
            if algorithm.name == "partial" or not algorithm.is_dir():
                continue
            for blob in algorithm.iterdir():
                info = blob.lstat()
                if stat.S_ISLNK(info.st_mode) or info.st_nlink == 1:
                    freed += info.st_size if stat.S_ISREG(info.st_mode) else 0
                    blob.unlink()
        return freed
