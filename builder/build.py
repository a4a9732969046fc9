"""The whole build: load the site, plan, realise into the store, assemble dist/."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.assemble import assemble
from builder.det.epoch import source_date_epoch
from builder.images.spec import IMAGES_DIR, image_specs
from builder.lock import (
    DEFAULT_LOCK,
    DEFAULT_UPSTREAM,
    Lock,
    check_lock,
    load_upstream,
    read_lock,
    stale_lock_error,
)
from builder.plan import BuildSettings, pinned_images, plan
from builder.render.manifests import BACKUP_IMAGE, missing_images
from builder.secrets import SecretDeriver, load_master_key, master_key_path
from builder.site import Site, load_site
from builder.store.derivation import Derivation
from builder.store.realise import Progress, Result, closure, realise
from builder.store.store import Store

if TYPE_CHECKING:
    from builder.airgap import AirgapSettings
    from builder.artifacts import Artifacts
    from builder.images.plan import OwnImages
    from builder.oci.registry import Registries


@dataclass(frozen=True)
class Fetching:
    """Where pinned things come from: `--mirror`s and `--artifact-mirror`."""

    mirrors: dict[str, str] = field(default_factory=dict)
    artifact_mirror: str | None = None

    def registries(self) -> Registries:
        from builder.oci.registry import Registries  # noqa: PLC0415 - httpx loads only when fetching

        return Registries(mirrors=self.mirrors)

    def artifacts(self) -> Artifacts:
        from builder.artifacts import Artifacts  # noqa: PLC0415 - httpx loads only when fetching

        return Artifacts(mirror=self.artifact_mirror)


@dataclass(frozen=True)
class Request:
    site: Path
    store: Path
    master_key: Path | None
    airgap: bool = False
    lock: Path = DEFAULT_LOCK
    upstream: Path = DEFAULT_UPSTREAM
    fetching: Fetching = field(default_factory=Fetching)
    compression: str = "zstd"
    images: bool = False
    images_dir: Path = IMAGES_DIR


@dataclass(frozen=True)
class Loaded:
    site: Site
    derivations: list[Derivation]
    store: Store
    warnings: tuple[str, ...] = ()


NO_PINS_WARNING = (
    "images.lock pins no k3s or Mycelium yet, so the node seeds set up the base system only "
    "(hostname, SSH, network); run `meshseed lock` where the registries and GitHub are reachable"
)


def node_pins(request: Request) -> Lock | None:
    """The lock, if it pins what nodes install; a stale one is refused, a missing part is not."""
    if not request.lock.exists():
        return None
    lock = read_lock(request.lock)
    if not lock.upstream_sha256:
        return None
    problems = check_lock(load_upstream(request.upstream), lock, request.lock)
    if problems:
        raise stale_lock_error(problems, request.lock)
    return lock


def load(request: Request) -> Loaded:
    site = load_site(request.site)
    key_path, is_default = master_key_path(request.master_key, os.environ)
    deriver = SecretDeriver(load_master_key(key_path, create=is_default), site.cluster)
    airgap = None
    if request.airgap:
        from builder.airgap import AirgapSettings  # noqa: PLC0415 - httpx loads only when fetching

        airgap = AirgapSettings(
            lock=current_lock(request.lock, request.upstream),
            registries=request.fetching.registries(),
            artifacts=request.fetching.artifacts(),
            compression=request.compression,
        )
    epoch = source_date_epoch(os.environ)
    images = own_images(request, airgap) if request.images else None
    pins = airgap.lock if airgap is not None else node_pins(request)
    settings = BuildSettings(deriver=deriver, epoch=epoch, airgap=airgap, images=images, pins=pins)
    warnings = (() if pins is not None else (NO_PINS_WARNING,)) + manifest_warnings(pins)
    return Loaded(site, closure(plan(site, settings)), Store(request.store), warnings)


def manifest_warnings(pins: Lock | None) -> tuple[str, ...]:
    images = pinned_images(pins)
    missing = missing_images(images)
    if missing:
        return (
            f"images.lock pins no {', '.join(missing)} image yet, so dist/manifests is not made; "
            "run `meshseed lock` where the registries are reachable",
        )
    if BACKUP_IMAGE not in images:
        return (
            "images.lock pins no backup image yet, so the CouchDB backup CronJob is left out "
            "(the MySQL and MongoDB ones use their upstream images)",
        )
    return ()


def own_images(request: Request, airgap: AirgapSettings | None) -> OwnImages:
    """Our images, with the lock checked for them (and for upstream images they build on)."""
    from builder.airgap import image_derivation  # noqa: PLC0415 - httpx loads only when fetching
    from builder.debian.pin import check_debian  # noqa: PLC0415
    from builder.images.plan import OwnImages  # noqa: PLC0415

    specs = image_specs(request.images_dir)
    lock = read_lock(request.lock)
    problems = check_debian(specs, lock, request.lock)
    if problems:
        raise stale_lock_error(problems, request.lock)
    upstream = {}
    if airgap is not None:
        upstream = {name: image_derivation(name, airgap) for name in lock.images}
    return OwnImages(specs, lock, request.fetching.artifacts(), upstream)


def current_lock(lock_path: Path, upstream_path: Path) -> Lock:
    """The lock, refused when it no longer matches upstream.yaml."""
    lock = read_lock(lock_path)
    problems = check_lock(load_upstream(upstream_path), lock, lock_path)
    if problems:
        raise stale_lock_error(problems, lock_path)
    return lock


def plan_summary(loaded: Loaded) -> list[dict[str, Any]]:
    return [
        {
            "name": d.name,
            "key": d.key,
            "status": "cached" if loaded.store.has(d.store_name) else "build",
        }
        for d in sorted(loaded.derivations, key=lambda d: d.name)
    ]


def build(loaded: Loaded, out: Path, *, jobs: int, progress: Progress, repair: bool) -> list[Result]:
    loaded.store.prepare()
    with loaded.store.shared():
        try:
            results = realise(loaded.store, loaded.derivations, jobs=jobs, progress=progress, repair=repair)
        finally:
            progress.close()
        assemble(results, out)
        loaded.store.add_root(out, [r.derivation.store_name for r in results])
    return results


def build_summary(results: list[Result], out: Path, warnings: tuple[str, ...] = ()) -> dict[str, Any]:
    counts = Counter(r.status.value for r in results)
    return {
        "dist": str(out),
        "warnings": list(warnings),
        "counts": {status: counts.get(status, 0) for status in ("built", "cached", "repaired")},
        "derivations": [
            {
                "name": r.derivation.name,
                "key": r.derivation.key,
                "digest": r.output.digest,
                "status": r.status.value,
            }
            for r in sorted(results, key=lambda r: r.derivation.name)
        ],
    }
