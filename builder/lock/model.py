"""What images.lock holds: upstream images and files by digest, our images' Debian closures.

The lock is versioned canonical JSON, written only by `meshseed lock`. It records the
sha256 of the upstream.yaml it came from, so a changed upstream.yaml makes it stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.debian.package import PinnedClosure
from builder.digest import Digest
from builder.oci.reference import parse_reference

LOCK_VERSION = 1
DEFAULT_LOCK = Path("images.lock")


@dataclass(frozen=True)
class LockedImage:
    reference: str
    digest: Digest
    media_type: str
    platforms: dict[str, Digest]
    roles: tuple[str, ...]
    # The Tutor setting the image fills, as upstream.yaml names it.
    tutor: str | None = None

    @property
    def pinned(self) -> str:
        """How manifests name the image: repository and digest, never a tag alone."""
        return f"{parse_reference(self.reference).name}@{self.digest}"


@dataclass(frozen=True)
class LockedFile:
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Lock:
    upstream_sha256: str
    k3s_version: str
    mycelium_version: str
    platforms: tuple[str, ...]
    images: dict[str, LockedImage]
    binaries: dict[str, LockedFile]
    debian: dict[str, PinnedClosure] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "version": LOCK_VERSION,
            "upstream_sha256": self.upstream_sha256,
            "k3s": {"version": self.k3s_version},
            "mycelium": {"version": self.mycelium_version},
            "platforms": list(self.platforms),
            "images": {
                name: {
                    "reference": image.reference,
                    "digest": image.digest,
                    "media_type": image.media_type,
                    "platforms": image.platforms,
                    "roles": list(image.roles),
                    **({"tutor": image.tutor} if image.tutor else {}),
                }
                for name, image in self.images.items()
            },
            "binaries": {
                name: {"url": f.url, "sha256": f.sha256, "size": f.size} for name, f in self.binaries.items()
            },
            "debian": {
                name: {"request_sha256": part.request_sha256, "packages": [vars(p) for p in part.packages]}
                for name, part in self.debian.items()
            },
        }

    @property
    def pins_upstream(self) -> bool:
        """Whether `meshseed lock` has pinned upstream.yaml (k3s, Mycelium, upstream images) yet."""
        return bool(self.upstream_sha256)

    def images_for(
        self, role: str, placement: Mapping[str, frozenset[str]] | None = None
    ) -> dict[str, LockedImage]:
        """The images a node of `role` needs. An image the cluster's workloads run is
        needed where one of them is scheduled (`placement`: image name -> roles, from the
        components); any other (k3s's own images) where upstream.yaml's `roles` say."""
        where = placement or {}
        return {
            name: image
            for name, image in sorted(self.images.items())
            if role in where.get(name, frozenset(image.roles))
        }


EMPTY_LOCK = Lock("", "", "", (), {}, {}, {})
