"""Pinned .deb files into the blob store: by sha256, from the archive, else snapshot.debian.org."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from builder.artifacts import downloader
from builder.digest import parse_digest
from builder.errors import MeshseedError
from builder.store.derivation import BuildContext


def fetch_deb(ctx: BuildContext, package: Mapping[str, Any]) -> Path:
    artifacts = downloader(ctx)

    def download(partial: Path) -> None:
        try:
            artifacts.download(package["url"], partial, sha256=package["sha256"])
        except MeshseedError as first:
            try:
                artifacts.download(package["snapshot_url"], partial, sha256=package["sha256"])
            except MeshseedError:
                raise first from None

    digest = parse_digest(f"sha256:{package['sha256']}", f"{ctx.derivation.name}: package {package['name']}")
    return ctx.blobs.ensure(digest, download)


def fetch_debs(ctx: BuildContext, packages: Sequence[Mapping[str, Any]]) -> list[Path]:
    """Each package's verified .deb in the blob store, in the order given."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda package: fetch_deb(ctx, package), packages))
