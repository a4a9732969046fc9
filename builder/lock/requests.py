"""Every Debian package set the lock pins: each of our Debian images, and the nodes' disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.images.spec import SPEC_FILE, Backend, DebianSpec, image_specs
from builder.lock.disk_spec import LOCK_NAME, load_disk_spec


@dataclass(frozen=True)
class DebianRequest:
    spec: DebianSpec
    # The file that asks for it, for messages.
    source: str


def image_requests(images_dir: Path) -> dict[str, DebianRequest]:
    return {
        spec.name: DebianRequest(spec.debian, str(spec.folder / SPEC_FILE))
        for spec in image_specs(images_dir)
        if spec.backend is Backend.DEBIAN and spec.debian is not None
    }


def disk_request(disk_spec: Path) -> dict[str, DebianRequest]:
    return {LOCK_NAME: DebianRequest(load_disk_spec(disk_spec).debian, str(disk_spec))}
