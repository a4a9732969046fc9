"""The whole build: load the site, plan, realise into the store, assemble dist/."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.assemble import assemble
from builder.det.epoch import source_date_epoch
from builder.ha import NodeLoss, analyse, read_manifests, site_nodes, verdict
from builder.images.spec import IMAGES_DIR, image_specs
from builder.lock import DEFAULT_LOCK, DEFAULT_UPSTREAM, Lock, LockFiles, UpstreamPart, load_lock
from builder.lock.disk_spec import DISK_SPEC
from builder.manifests.derivation import BACKUP_IMAGE, missing_images
from builder.plan import BuildSettings, pinned_images, plan
from builder.secrets import SecretDeriver, load_master_key, master_key_path
from builder.site import Role, Site, load_site
from builder.store.check import Checked, check_store
from builder.store.derivation import Derivation
from builder.store.progress import SilentProgress
from builder.store.realise import Progress, Result, closure, realise
from builder.store.store import DEFAULT_STORE, Store

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
    # None: `.meshseed/store` next to the site file.
    store: Path | None
    master_key: Path | None
    # Only `build` may make a missing key (at the default path): a command that only reads
    # secrets would otherwise print ones that belong to no cluster.
    create_master_key: bool = False
    airgap: bool = False
    lock: Path = DEFAULT_LOCK
    upstream: Path = DEFAULT_UPSTREAM
    fetching: Fetching = field(default_factory=Fetching)
    compression: str = "zstd"
    images: bool = False
    images_dir: Path = IMAGES_DIR
    # Disk images per role and node; they hold the air-gap files, so `airgap` comes with them.
    disks: bool = False
    disk_spec: Path = DISK_SPEC

    @property
    def lock_files(self) -> LockFiles:
        return LockFiles(self.lock, self.upstream, self.images_dir, self.disk_spec)


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


def open_deriver(master_key: Path | None, site: Site, *, create: bool = False) -> SecretDeriver:
    """The cluster's secrets, from `--master-key`, $MESHSEED_MASTER_KEY_FILE or the default
    path next to the site file; with `create`, a key missing at the default path is made."""
    key_path, is_default = master_key_path(master_key, os.environ, site.source.parent)
    return SecretDeriver(load_master_key(key_path, create=create and is_default), site.cluster)


def site_store(site: Site) -> Path:
    """The default store: beside the site file, like its master key."""
    return site.source.parent / DEFAULT_STORE


def load_request_lock(request: Request) -> Lock:
    """images.lock as this build relies on it: an air-gap build fetches what it pins, so
    it must pin upstream.yaml; our images need their Debian closures."""
    upstream = UpstreamPart.REQUIRED if request.airgap else UpstreamPart.IF_PINNED
    return load_lock(request.lock_files, upstream=upstream, debian=request.images, disks=request.disks)


def load(request: Request) -> Loaded:
    site = load_site(request.site)
    deriver = open_deriver(request.master_key, site, create=request.create_master_key)
    lock = load_request_lock(request)
    airgap = None
    if request.airgap:
        from builder.airgap import AirgapSettings  # noqa: PLC0415 - httpx loads only when fetching

        airgap = AirgapSettings(
            registries=request.fetching.registries(),
            artifacts=request.fetching.artifacts(),
            compression=request.compression,
        )
    epoch = source_date_epoch(os.environ)
    images = own_images(request, lock, airgap) if request.images else None
    settings = BuildSettings(
        deriver=deriver, epoch=epoch, airgap=airgap, images=images, lock=lock, disks=request.disks
    )
    warnings = (
        site.warnings
        + (() if settings.pins is not None else (NO_PINS_WARNING,))
        + manifest_warnings(site, settings.pins, {spec.name for spec in images.specs} if images else set())
    )
    store = Store(request.store or site_store(site))
    return Loaded(site, closure(plan(site, settings)), store, warnings)


def manifest_warnings(site: Site, pins: Lock | None, own: Collection[str]) -> tuple[str, ...]:
    """What the manifests leave out: all of them without the upstream pins, and the jobs of
    our backup agent when this build does not make its image (`own`: the images it makes)."""
    images = pinned_images(pins)
    missing = missing_images(images)
    if missing:
        return (
            f"images.lock pins no {', '.join(missing)} image yet, so dist/manifests is not made; "
            "run `meshseed lock` where the registries are reachable",
        )
    if site.with_role(Role.BACKUP) and BACKUP_IMAGE not in own:
        return (
            "without --images the build makes no backup image, so the CouchDB backup and rotation "
            "CronJobs and the etcd snapshots' transfer to the backup node are left out (the other "
            "backup jobs use their upstream images)",
        )
    return ()


def own_images(request: Request, lock: Lock, airgap: AirgapSettings | None) -> OwnImages:
    """Our images, each after the images it builds on; upstream ones come fetched by digest."""
    from builder.airgap import image_derivation  # noqa: PLC0415 - httpx loads only when fetching
    from builder.images.plan import OwnImages  # noqa: PLC0415

    upstream = {}
    if airgap is not None:
        upstream = {name: image_derivation(name, image, airgap) for name, image in lock.images.items()}
    return OwnImages(image_specs(request.images_dir), request.fetching.artifacts(), upstream)


def plan_summary(loaded: Loaded) -> list[dict[str, Any]]:
    return [
        {
            "name": d.name,
            "key": d.key,
            "status": "cached" if loaded.store.has(d.store_name) else "build",
        }
        for d in sorted(loaded.derivations, key=lambda d: d.name)
    ]


def build(
    loaded: Loaded,
    out: Path,
    *,
    jobs: int,
    progress: Progress,
    repair: bool,
    warn: Callable[[str], object] = lambda _: None,
) -> list[Result]:
    loaded.store.prepare()
    with loaded.store.shared():
        try:
            results = realise(loaded.store, loaded.derivations, jobs=jobs, progress=progress, repair=repair)
        finally:
            progress.close()
        # Before dist/ is assembled: a site that one server's loss takes down gets no dist/.
        for warning in node_loss_warnings(loaded.site, results):
            warn(warning)
        assemble(results, out)
        loaded.store.add_root(out, [r.derivation.store_name for r in results])
    return results


def manifests_entry(results: list[Result]) -> Path | None:
    """The store entry of dist/manifests, when this build makes it (it needs the pins)."""
    return next((r.output.path for r in results if r.derivation.name == "manifests"), None)


def node_loss_warnings(site: Site, results: list[Result]) -> tuple[str, ...]:
    """Run the node-loss model on the rendered manifests: raises when losing one server
    leaves a user-facing path down; the known gaps come back as warnings."""
    entry = manifests_entry(results)
    if entry is None:
        return ()
    return verdict(analyse(read_manifests(entry), site_nodes(site)))


def node_losses(loaded: Loaded, *, jobs: int) -> tuple[NodeLoss, ...] | None:
    """The model's answer for every node, making only the manifests (None without pins)."""
    targets = [d for d in loaded.derivations if d.name == "manifests"]
    if not targets:
        return None
    loaded.store.prepare()
    with loaded.store.shared():
        results = realise(loaded.store, targets, jobs=jobs, progress=SilentProgress())
        entry = manifests_entry(results)
        assert entry is not None
        return analyse(read_manifests(entry), site_nodes(loaded.site))


def check(loaded: Loaded, *, jobs: int, progress: Progress) -> list[Checked]:
    """Rebuild everything apart from the store and compare; the store and dist/ are only read."""
    loaded.store.prepare()
    with loaded.store.shared():
        try:
            return check_store(loaded.store, loaded.derivations, jobs=jobs, progress=progress)
        finally:
            progress.close()


def check_summary(checked: list[Checked], store: Path) -> dict[str, Any]:
    return {
        "store": str(store),
        "checked": sum(c.in_store for c in checked),
        "differ": {c.derivation.store_name: list(c.differences) for c in checked if c.differences},
        "not_in_store": sorted(c.derivation.store_name for c in checked if not c.in_store),
    }


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
