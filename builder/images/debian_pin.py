"""`meshseed lock` for our images: each Debian image's package closure, pinned by sha256."""

from __future__ import annotations

from pathlib import Path

import httpx

from builder.debian.index import Source
from builder.debian.package import PinnedClosure
from builder.debian.pin import pin_closure
from builder.images.spec import DebianSpec, ImageSpec


def pin_debian(spec: DebianSpec, client: httpx.Client) -> PinnedClosure:
    packages = pin_closure(
        client,
        sources=[Source(source.url, source.suite) for source in spec.sources],
        architecture=spec.architecture,
        keyring=Path(spec.keyring),
        packages=spec.packages,
        snapshot=spec.snapshot,
    )
    return PinnedClosure(spec.request_sha256(), packages)


def pin_images(specs: list[ImageSpec]) -> dict[str, PinnedClosure]:
    with httpx.Client(timeout=120.0, follow_redirects=True) as client:
        return {spec.name: pin_debian(spec.debian, client) for spec in specs if spec.debian is not None}
