"""Plan a site's build: the graph of derivations that together make dist/."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from builder.det.jsonfmt import canonical_json
from builder.images.archive import own_archive_derivation
from builder.inventory import mycelium_identity, node_facts, node_records
from builder.lock import EMPTY_LOCK, Lock
from builder.manifests import registry
from builder.manifests.derivation import manifests_derivation, missing_images, own_stand_ins
from builder.render.dns import zone_derivation
from builder.render.node import NodePlan, check_downloads, mesh_derivation
from builder.render.payload import payload_derivation
from builder.render.seed import seed_derivation
from builder.resources import cloud_init_templates
from builder.secrets import SecretDeriver
from builder.site import Site
from builder.store.derivation import BuildContext, Derivation

if TYPE_CHECKING:
    from builder.airgap import AirgapSettings
    from builder.images.plan import OwnImages


@dataclass(frozen=True)
class BuildSettings:
    """Everything besides the site that decides what the build makes."""

    deriver: SecretDeriver
    epoch: int
    templates: Path = field(default_factory=cloud_init_templates)
    airgap: AirgapSettings | None = None
    images: OwnImages | None = None
    # images.lock as `load_lock` checked it; empty when there is none yet.
    lock: Lock = EMPTY_LOCK
    # Bootable disk images per role and node (--disks); only with `airgap`, whose files they hold.
    disks: bool = False

    @property
    def pins(self) -> Lock | None:
        """The lock, if it pins k3s and Mycelium; without them, seeds set up the base system only."""
        return self.lock if self.lock.pins_upstream else None


def build_nodes_json(ctx: BuildContext) -> None:
    ctx.write("nodes.json", canonical_json(node_records(ctx.inputs["nodes"], ctx.secrets)))


def node_plan_of(site: Site, settings: BuildSettings) -> NodePlan:
    return NodePlan(
        {node.name: mycelium_identity(settings.deriver, node.name) for node in site.nodes}, site.servers[0]
    )


def plan(site: Site, settings: BuildSettings) -> list[Derivation]:
    """Every derivation of the site, sorted by name."""
    derivations = [
        Derivation(
            name="nodes-json",
            build=build_nodes_json,
            inputs={"nodes": node_facts(site)},
            secrets=settings.deriver,
            dist_path=".",
        )
    ]
    node_plan = node_plan_of(site, settings)
    own = own_image_derivations(settings)
    derivations += own.values()
    archives = _own_image_archives(site, settings, node_plan, own)
    derivations += archives.values()
    bundles: dict[str, Derivation] = {}
    binaries: dict[str, Derivation] = {}
    if settings.airgap is not None:
        from builder.airgap import plan_airgap  # noqa: PLC0415 - httpx loads only when fetching

        roles = {node.role.value for node in site.nodes}
        placement = image_placement(site, settings, node_plan)
        airgap = plan_airgap(roles, settings.lock, settings.airgap, settings.epoch, placement)
        bundles = airgap.bundles
        binaries = airgap.binaries
        derivations += airgap.derivations()
        if settings.pins is not None:
            for role in sorted({node.role.value for node in site.nodes}):
                nodes = [node.name for node in site.nodes if node.role.value == role]
                own_archive = archives.get(role)
                payload = payload_derivation(
                    role, nodes, airgap.binaries, bundles.get(role), settings.epoch, archive=own_archive
                )
                derivations.append(payload)
    mesh = mesh_derivation(site, node_plan)
    if settings.pins is not None:
        if settings.airgap is None:
            check_downloads(site)
        derivations.append(mesh)
    manifests = plan_manifests(site, settings, node_plan, own)
    if manifests is not None:
        derivations.append(manifests)
    seeds = {}
    for node in site.nodes:
        seeds[node.name] = seed_derivation(
            site,
            node,
            epoch=settings.epoch,
            templates=settings.templates,
            deriver=settings.deriver,
            plan=node_plan,
            lock=settings.pins,
            bundle=bundles.get(node.role.value) if settings.airgap is not None else None,
            mesh=mesh,
            manifests=manifests,
            archive=archives.get(node.role.value),
        )
    derivations += seeds.values()
    if settings.disks and settings.airgap is not None and settings.pins is not None:
        from builder.disk.plan import plan_disks  # noqa: PLC0415 - disk tools load only for --disks

        images = {
            role: tuple(dep for dep in (bundles.get(role), archives.get(role)) if dep is not None)
            for role in {node.role.value for node in site.nodes}
        }
        derivations += plan_disks(
            site,
            debian=settings.lock.debian,
            artifacts=settings.airgap.artifacts,
            binaries=binaries,
            images=images,
            seeds=seeds,
            epoch=settings.epoch,
        )
    if site.nameservers:
        derivations.append(zone_derivation(site, settings.epoch))
    return sorted(derivations, key=lambda d: d.name)


def own_image_derivations(settings: BuildSettings) -> dict[str, Derivation]:
    """Our images (images/<name>/) by name, when the build makes them (--images)."""
    if settings.images is None:
        return {}
    from builder.images.plan import plan_images  # noqa: PLC0415 - httpx loads only when fetching

    return plan_images(settings.images, settings.lock.debian, settings.epoch)


def own_image_archives(site: Site, settings: BuildSettings) -> dict[str, Derivation]:
    """Node role -> the archive of our images its workloads run (`own-images-<role>`, one
    file `<role>-own.tar`), for k3s to import from /var/lib/rancher/k3s/agent/images/.
    The same derivations `plan` holds. A role whose workloads run none of our images has
    none, and so does every role of a build without --images or without the upstream pins
    (no manifests, so nothing runs them)."""
    return _own_image_archives(site, settings, node_plan_of(site, settings), own_image_derivations(settings))


def _own_image_archives(
    site: Site, settings: BuildSettings, node_plan: NodePlan, own: dict[str, Derivation]
) -> dict[str, Derivation]:
    if not own:
        return {}
    images = pinned_images(settings.pins)
    if missing_images(images):
        return {}
    gathered = registry.gather(
        site, _overlays(node_plan), images, tutor_images(settings.pins), own_stand_ins(own)
    )
    placement = registry.image_roles(gathered)
    roles = sorted({node.role for node in site.nodes}, key=lambda role: role.value)
    archives = {}
    for role in roles:
        wanted = [own[name] for name in sorted(own) if role in placement.get(name, frozenset())]
        if wanted:
            archives[role.value] = own_archive_derivation(role.value, wanted, settings.epoch)
    return archives


def pinned_images(lock: Lock | None) -> dict[str, str]:
    return {name: image.pinned for name, image in lock.images.items()} if lock is not None else {}


def _overlays(node_plan: NodePlan) -> dict[str, str]:
    return {name: str(identity.overlay_address) for name, identity in node_plan.identities.items()}


def image_placement(site: Site, settings: BuildSettings, node_plan: NodePlan) -> dict[str, frozenset[str]]:
    """Image name -> the node roles the manifests' workloads of that image are scheduled on,
    as the components declare them; empty while the manifests are left out (no workloads)."""
    images = pinned_images(settings.pins)
    if missing_images(images):
        return {}
    gathered = registry.gather(site, _overlays(node_plan), images, tutor_images(settings.pins))
    return {
        name: frozenset(role.value for role in roles)
        for name, roles in registry.image_roles(gathered).items()
    }


def plan_manifests(
    site: Site, settings: BuildSettings, node_plan: NodePlan, own: dict[str, Derivation] | None = None
) -> Derivation | None:
    """The manifests, once images.lock pins every image they run; `own`: our images this
    build makes, by name."""
    images = pinned_images(settings.pins)
    if missing_images(images):
        return None
    return manifests_derivation(
        site,
        overlays=_overlays(node_plan),
        images=images,
        deriver=settings.deriver,
        tutor_images=tutor_images(settings.pins),
        own_images=own,
    )


def tutor_images(lock: Lock | None) -> dict[str, dict[str, str]]:
    """Tutor setting -> the image upstream.yaml pins for it, by tag and by digest."""
    images = lock.images.values() if lock is not None else ()
    return {
        image.tutor: {"reference": image.reference, "pinned": image.pinned}
        for image in sorted(images, key=lambda image: image.tutor or "")
        if image.tutor
    }
