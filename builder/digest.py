"""Content digests (`sha256:<64 hex>`), checked before they name anything.

A digest becomes a file name in the blob store and in OCI layouts, and a path in a
registry's URL space. One that comes from outside (a registry, a manifest, an index, the
lock) could be `sha256:../../x` and name a path outside the store, so every such digest
goes through `parse_digest` first. Code that turns a digest into a path takes `Digest`,
which only this module makes, and checks its form again, so a plain string cast to
`Digest` cannot slip through either.
"""

from __future__ import annotations

import hashlib
import re
from typing import NewType

from builder.errors import ExitStatus, MeshseedError

Digest = NewType("Digest", str)

_FORM = re.compile(r"sha256:[0-9a-f]{64}")


def is_digest(value: object) -> bool:
    return isinstance(value, str) and _FORM.fullmatch(value) is not None


def parse_digest(value: object, where: str, *, status: ExitStatus = ExitStatus.FAILED) -> Digest:
    """`value` as a Digest, or an error naming `where` it came from (the artifact) and the value."""
    if not is_digest(value):
        raise MeshseedError(
            f"{where}: {value!r} is not a sha256 digest (sha256: and 64 lowercase hex digits); "
            "refusing to use it",
            status=status,
        )
    return Digest(str(value))


def parse_sha256_hex(value: object, where: str, *, status: ExitStatus = ExitStatus.FAILED) -> str:
    """A bare sha256 (64 hex digits, as the lock pins files by), checked like a digest."""
    if not (isinstance(value, str) and is_digest(f"sha256:{value}")):
        raise MeshseedError(
            f"{where}: {value!r} is not a sha256 (64 lowercase hex digits); refusing to use it", status=status
        )
    return str(value)


def digest_of(data: bytes) -> Digest:
    """The digest of some content, which is well-formed by construction."""
    return Digest("sha256:" + hashlib.sha256(data).hexdigest())


def hex_part(digest: Digest) -> str:
    """The 64 hex digits, for a file name; the form is checked again here."""
    return parse_digest(digest, "digest").removeprefix("sha256:")


def blob_relpath(digest: Digest) -> str:
    """Where an OCI image layout keeps the blob: `blobs/sha256/<hex>`."""
    return f"blobs/sha256/{hex_part(digest)}"
