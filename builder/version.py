"""The builder's own version, as it enters every derivation key.

During development the release number alone would let changed code reuse outputs of
the old code, so the version also carries a digest of the package's own source files.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from builder import __version__


@cache
def builder_version(scope: tuple[str, ...] = ()) -> str:
    """The release and a digest of the source files; with `scope` (folders or files of
    the package, e.g. "disk", "tools/e2fs.py"), of those files only."""
    package = Path(__file__).parent
    roots = [package / part for part in scope] or [package]
    paths = {path for root in roots for path in ([root] if root.is_file() else root.rglob("*.py"))}
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.relative_to(package).as_posix()):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{__version__}+{digest.hexdigest()[:16]}"
