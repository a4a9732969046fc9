"""Plan the images we build ourselves, each after the images it builds on."""

from __future__ import annotations

from dataclasses import dataclass

from builder.artifacts import Downloader
from builder.debian.package import PinnedClosure
from builder.errors import MeshseedError
from builder.images.containerfile import containerfile_derivation
from builder.images.debian_image import debian_image_derivation
from builder.images.spec import Backend, ImageSpec
from builder.store.derivation import Derivation


@dataclass(frozen=True)
class OwnImages:
    specs: list[ImageSpec]
    artifacts: Downloader
    # Fetch derivations of locked upstream images, for Containerfiles built on them.
    upstream: dict[str, Derivation]


def plan_images(settings: OwnImages, debian: dict[str, PinnedClosure], epoch: int) -> dict[str, Derivation]:
    """Each image's derivation, by image name; `debian` holds images.lock's pinned closures
    of our Debian images, by image name."""
    built: dict[str, Derivation] = {}
    pending = {spec.name: spec for spec in settings.specs}
    while pending:
        ready = [s for s in pending.values() if all(b in built or b not in pending for b in s.base_images)]
        if not ready:
            raise MeshseedError(f"images build on each other in a cycle: {', '.join(sorted(pending))}")
        for spec in sorted(ready, key=lambda s: s.name):
            del pending[spec.name]
            if spec.backend is Backend.DEBIAN:
                pinned = debian.get(spec.name)
                if pinned is None:
                    raise MeshseedError(
                        f"images.lock: debian.{spec.name}: is missing", hint="run `meshseed lock`"
                    )
                built[spec.name] = debian_image_derivation(spec, pinned, epoch, settings.artifacts)
            else:
                bases = {**settings.upstream, **built}
                built[spec.name] = containerfile_derivation(spec, bases, epoch)
    return dict(sorted(built.items()))
