"""Plan a site's build: the graph of derivations that together make dist/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from builder.det.jsonfmt import canonical_json
from builder.inventory import node_facts, node_records
from builder.render.seed import SEED_FILES, build_seed, seed_inputs
from builder.secrets import SecretDeriver
from builder.site import Site
from builder.store.derivation import BuildContext, Derivation

if TYPE_CHECKING:
    from builder.airgap import AirgapSettings
    from builder.images.plan import OwnImages

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = PROJECT_ROOT / "cloud-init"


@dataclass(frozen=True)
class BuildSettings:
    """Everything besides the site that decides what the build makes."""

    deriver: SecretDeriver
    epoch: int
    templates: Path = TEMPLATES
    airgap: AirgapSettings | None = None
    images: OwnImages | None = None


def build_nodes_json(ctx: BuildContext) -> None:
    ctx.write("nodes.json", canonical_json(node_records(ctx.inputs["nodes"], ctx.secrets)))


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
    seed_sources = {f"{name}.j2": settings.templates / f"{name}.j2" for name in SEED_FILES}
    for node in site.nodes:
        derivations.append(
            Derivation(
                name=f"seed-{node.name}",
                build=build_seed,
                inputs=seed_inputs(site, node, settings.epoch),
                sources=seed_sources,
                dist_path=f"nodes/{node.name}",
            )
        )
    if settings.airgap is not None:
        from builder.airgap import plan_airgap  # noqa: PLC0415 - httpx loads only when fetching

        roles = {node.role.value for node in site.nodes}
        derivations.extend(plan_airgap(roles, settings.airgap, settings.epoch))
    if settings.images is not None:
        from builder.images.plan import plan_images  # noqa: PLC0415 - httpx loads only when fetching

        derivations.extend(plan_images(settings.images, settings.epoch))
    return sorted(derivations, key=lambda d: d.name)
