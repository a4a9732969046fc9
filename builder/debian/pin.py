"""Pin a package closure: resolve it from signed archive indexes, each .deb by sha256."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import httpx

from builder.debian.closure import Universe, resolve_closure
from builder.debian.index import Source, load_index
from builder.debian.package import PinnedPackage
from builder.digest import parse_sha256_hex


def pin_closure(
    client: httpx.Client,
    *,
    sources: Sequence[Source],
    architecture: str,
    keyring: Path,
    packages: Sequence[str],
    snapshot: str,
) -> tuple[PinnedPackage, ...]:
    """The closure of `packages` in `sources`, each .deb with its archive URL and, as a
    fallback once the archive has moved on, its URL on the `snapshot` service."""
    candidates = []
    for source in sources:
        candidates += load_index(client, source, architecture, keyring)
    closure = resolve_closure(packages, Universe(candidates, architecture))
    return tuple(
        PinnedPackage(
            name=c.name,
            version=c.version,
            architecture=c.fields["Architecture"],
            sha256=parse_sha256_hex(c.fields.get("SHA256"), f"{c.source.url}: the Packages index's {c.name}"),
            size=int(c.fields["Size"]),
            url=f"{c.source.url.rstrip('/')}/{c.fields['Filename']}",
            snapshot_url=f"{snapshot.rstrip('/')}/{c.source.archive_name}/{c.snapshot_time}/{c.fields['Filename']}",
        )
        for c in closure
    )
