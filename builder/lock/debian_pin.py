"""`meshseed lock` for our images and disks: each Debian package closure, pinned by sha256."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import httpx

from builder.debian.index import Source
from builder.debian.package import PinnedClosure
from builder.debian.pin import pin_closure
from builder.images.spec import DebianSpec
from builder.lock.requests import DebianRequest


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


def pin_requests(requests: Mapping[str, DebianRequest]) -> dict[str, PinnedClosure]:
    """Each request's closure, by its name in images.lock (an image's, or the nodes' disk)."""
    with httpx.Client(timeout=120.0, follow_redirects=True) as client:
        return {name: pin_debian(request.spec, client) for name, request in sorted(requests.items())}
