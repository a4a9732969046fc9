"""A lock that pins the repository's upstream.yaml with test values, for seed tests.

The digests are clearly fake (sha256 of "test <name>"), so that seeds can be rendered and
checked here, where the real registries and GitHub cannot be reached.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from builder.lock import Lock, LockedFile, LockedImage, load_upstream, write_lock

REPO = Path(__file__).resolve().parent.parent


def test_sha256(name: str) -> str:
    return hashlib.sha256(f"test {name}".encode()).hexdigest()


test_sha256.__test__ = False  # type: ignore[attr-defined]


def write_test_lock(root: Path, *, extra_images: str = "", upstream: str | None = None) -> Lock:
    """Copy upstream.yaml (or write `upstream`), plus `extra_images` entries, into
    root/images and write root/images.lock pinning it with test values."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    text = (upstream or (REPO / "images" / "upstream.yaml").read_text()) + extra_images
    (root / "images" / "upstream.yaml").write_text(text)
    upstream = load_upstream(root / "images" / "upstream.yaml")
    binaries = {name: LockedFile(url, test_sha256(name), 1000) for name, url in upstream.binaries().items()}
    images = {
        image.name: LockedImage(
            image.image,
            "sha256:" + test_sha256(image.name),
            "application/vnd.oci.image.index.v1+json",
            {"linux/amd64": "sha256:" + test_sha256(f"{image.name}/amd64")},
            tuple(image.roles),
            image.tutor,
        )
        for image in upstream.images
    }
    lock = Lock(
        upstream.sha256, upstream.k3s.version, upstream.mycelium.version, upstream.platforms, images, binaries
    )
    write_lock(lock, root / "images.lock")
    return lock
