"""Plan the air-gap part of a build: fetch each locked image and binary, bundle per role."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from builder.artifacts import Artifacts, build_binary
from builder.lock import REQUIRED_PLATFORM, Lock, LockedImage
from builder.oci.bundle import build_bundle, bundle_inputs
from builder.oci.fetch import build_fetch, fetch_inputs
from builder.oci.registry import Registries
from builder.store.derivation import Derivation

EXECUTABLES = frozenset({"k3s", "k3s-install.sh"})


@dataclass(frozen=True)
class AirgapSettings:
    """How pinned things are fetched and bundled; what is pinned is the build's one lock."""

    registries: Registries
    artifacts: Artifacts
    compression: str = "zstd"
    # Nodes are x86-64 for now; the lock pins arm64 too for when sites can say otherwise.
    platform: str = REQUIRED_PLATFORM


def image_derivation(
    name: str, image: LockedImage, settings: AirgapSettings, *, all_platforms: bool = False
) -> Derivation:
    """Fetch a locked image: the nodes' platform, or every pinned one (for a mirror, which
    must serve the whole index the lock pins)."""
    platforms = image.platforms if all_platforms else {settings.platform: image.platforms[settings.platform]}
    return Derivation(
        name=f"image-{name}",
        build=build_fetch,
        inputs=fetch_inputs(image.reference, image.digest, platforms),
        fetcher=settings.registries,
    )


@dataclass(frozen=True)
class AirgapPlan:
    bundles: dict[str, Derivation]  # by node role
    binaries: dict[str, Derivation]  # by lock name

    def derivations(self) -> list[Derivation]:
        return [*self.bundles.values(), *self.binaries.values()]


def plan_airgap(
    roles: set[str],
    lock: Lock,
    settings: AirgapSettings,
    epoch: int,
    placement: Mapping[str, frozenset[str]] | None = None,
) -> AirgapPlan:
    """`placement`: image name -> the roles its workloads are scheduled on (Lock.images_for)."""
    images = {name: image_derivation(name, image, settings) for name, image in sorted(lock.images.items())}
    bundles = {}
    for role in sorted(roles):
        wanted = lock.images_for(role, placement)
        if wanted:
            bundles[role] = Derivation(
                name=f"airgap-{role}",
                build=build_bundle,
                inputs=bundle_inputs(role, settings.compression, epoch),
                deps=tuple(images[name] for name in wanted),
                dist_path="airgap",
            )
    binaries = {}
    for name, pinned in sorted(lock.binaries.items()):
        binaries[name] = Derivation(
            name=f"binary-{name.replace('.', '-')}",
            build=build_binary,
            inputs={
                "file": name,
                "url": pinned.url,
                "sha256": pinned.sha256,
                "size": pinned.size,
                "executable": name in EXECUTABLES,
            },
            fetcher=settings.artifacts,
            dist_path="airgap/binaries",
        )
    return AirgapPlan(bundles, binaries)
