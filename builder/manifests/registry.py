"""The registered cluster components, and what they declare gathered into one view.

Components are found in builder/components/ (each module's `COMPONENT`), in module-name
order, so adding a module adds a component; `registered()` adds one for a while, as the
tests do. `gather()` asks each for its declarations and checks that no two disagree: a
port name, a secret name or a manifest file belongs to one component only.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from builder import components as components_package
from builder.cluster.component import Cluster, Component, Namespace, SecretSpec
from builder.cluster.flows import SCRAPER, Flow, merged, policies
from builder.errors import MeshseedError
from builder.network import cluster_networks
from builder.secrets import RECIPES, Purpose, Recipe
from builder.site import Role, Site

_extra: list[Component] = []


@functools.cache
def _discovered() -> tuple[Component, ...]:
    found = []
    for module in sorted(pkgutil.iter_modules(components_package.__path__), key=lambda m: m.name):
        component = importlib.import_module(f"{components_package.__name__}.{module.name}").COMPONENT
        if not isinstance(component, Component):
            raise TypeError(f"builder/components/{module.name}.py: COMPONENT is not a Component")
        found.append(component)
    return tuple(found)


def components() -> tuple[Component, ...]:
    return (*_discovered(), *_extra)


@contextlib.contextmanager
def registered(component: Component) -> Iterator[None]:
    """`component` is registered inside the block (after the discovered ones)."""
    if component.name in {known.name for known in components()}:
        raise ValueError(f"a component named {component.name} is already registered")
    _extra.append(component)
    try:
        yield
    finally:
        _extra.remove(component)


def by_name(names: list[str]) -> list[Component]:
    known = {component.name: component for component in components()}
    return [known[name] for name in names]


def required_images() -> tuple[str, ...]:
    """Upstream images the manifests run; images.lock must pin each of them."""
    return tuple(sorted({name for component in components() for name in component.images}))


def wanted_own_images() -> tuple[str, ...]:
    """Our images some component runs when the build makes them."""
    return tuple(sorted({name for component in components() for name in component.own_images}))


def secret_recipes() -> dict[str, Recipe]:
    """Every secret `meshseed secret` can print: the built-in purposes and the components'."""
    return _one_owner(
        "secret purpose",
        [(purpose.value, RECIPES[purpose], "builder/secrets.py") for purpose in Purpose]
        + [(spec.purpose, spec.recipe, c.name) for c in components() for spec in c.secrets.values()],
    )


def _one_owner(what: str, claims: list[tuple[str, Any, str]]) -> dict[str, Any]:
    """name -> value, refusing a name two components claim with different values."""
    owners: dict[str, tuple[Any, str]] = {}
    for name, value, component in claims:
        if name in owners and owners[name][0] != value:
            raise MeshseedError(
                f"builder/components: {what} {name!r} is declared by both {owners[name][1]} and {component}"
            )
        owners.setdefault(name, (value, component))
    return {name: value for name, (value, _) in owners.items()}


def ports() -> dict[str, int]:
    return _one_owner("port", [(n, p, c.name) for c in components() for n, p in c.ports.items()])


@dataclass(frozen=True)
class Gathered:
    """Every enabled component's declarations, for one site."""

    components: tuple[Component, ...]
    cluster: Cluster
    namespaces: tuple[Namespace, ...]
    flows: tuple[Flow, ...]
    secrets: Mapping[str, SecretSpec]

    def template_sources(self) -> dict[str, Path]:
        """Jinja name (<component>/<template>) -> file, for every template they use."""
        return {
            f"{component.name}/{template}": component.template_dir() / template
            for component in self.components
            for template in _templates(component)
        }


def _templates(component: Component) -> list[str]:
    return [
        *component.files.values(),
        *(f"{name}.yaml.j2" for name in component.manifests),
        *(fragment for fragment in (component.alert_rules, component.scrape_configs) if fragment),
    ]


def gather(
    site: Site,
    overlays: Mapping[str, str],
    images: Mapping[str, str],
    tutor_images: Mapping[str, Mapping[str, str]] | None = None,
    own_images: Mapping[str, str] | None = None,
) -> Gathered:
    """`images`: upstream name -> pinned reference; `own_images`: ours -> stand-in."""
    everything = components()
    networks = cluster_networks(site.cluster)
    own = dict(own_images or {})
    base = Cluster(site, overlays, networks, images, ports(), tutor_images=tutor_images or {}, own_images=own)
    enabled = tuple(component for component in everything if component.enabled(base))
    namespaces = _one_owner(
        "namespace",
        [(n.name, (n.restricted, n.privileged_because), c.name) for c in enabled for n in c.namespaces],
    )
    _one_owner("manifest", [(m, c.name, c.name) for c in enabled for m in c.manifests])
    cluster = base
    if base.backup_node is not None:
        jobs = sorted(
            (job for component in enabled for job in component.backup_jobs(base)),
            key=lambda job: job.daily_at,
        )
        scripts = _one_owner(
            "backup script",
            [(key, file, c.name) for c in enabled for key, file in c.backup_scripts.items()],
        )
        cluster = replace(base, backup_jobs=tuple(jobs), backup_scripts=scripts)
    flows: list[Flow] = []
    for component in enabled:
        flows += component.flows(cluster)
        flows += [Flow(SCRAPER, scrape.pods, scrape.ports) for scrape in component.scrapes(cluster)]
    return Gathered(
        components=enabled,
        cluster=cluster,
        namespaces=tuple(Namespace(name, *profile) for name, profile in sorted(namespaces.items())),
        flows=tuple(merged(flows)),
        secrets=_one_owner("secret", [(n, s, c.name) for c in enabled for n, s in c.secrets.items()]),
    )


def image_roles(gathered: Gathered) -> dict[str, frozenset[Role]]:
    """Image name -> the node roles its workloads are scheduled on, from every enabled
    component's declarations and the backup jobs (which run on the backup node)."""
    cluster = gathered.cluster
    by_reference = {reference: name for name, reference in {**cluster.images, **cluster.own_images}.items()}
    claims: dict[str, set[Role]] = {}
    for component in gathered.components:
        for name, roles in component.image_roles(cluster).items():
            claims.setdefault(name, set()).update(roles)
    for job in cluster.backup_jobs:
        claims.setdefault(by_reference[job.image], set()).add(Role.BACKUP)
    return {name: frozenset(roles) for name, roles in sorted(claims.items())}


def public_inputs(gathered: Gathered) -> dict[str, Any]:
    """The manifests' inputs besides the site's own: what components declare, by name."""
    cluster = gathered.cluster
    enabled = gathered.components
    shared = {
        "components": [component.name for component in enabled],
        "ports": dict(cluster.ports),
        "namespaces": [
            {"name": n.name, "restricted": n.restricted, "privileged_because": n.privileged_because}
            for n in gathered.namespaces
        ],
        "policies": policies(list(gathered.flows)),
        "alert_templates": [f"{c.name}/{c.alert_rules}" for c in enabled if c.alert_rules],
        "scrape_templates": [f"{c.name}/{c.scrape_configs}" for c in enabled if c.scrape_configs],
    }
    own: dict[str, Any] = {}
    for component in components():
        # A disabled component's inputs are None, so templates can ask whether it is there.
        values = component.inputs(cluster) if component in enabled else None
        if values == {}:
            continue
        if component.context_key in shared or component.context_key in RESERVED:
            raise MeshseedError(
                f"builder/components: {component.name}'s inputs would hide the templates' "
                f"{component.context_key!r}; give it another key"
            )
        own[component.context_key] = values
    return {**shared, **own}


# The site's values every template sees (render/manifests.py).
RESERVED = frozenset(
    {
        *("cluster", "domain", "lms_host", "studio_host", "images", "nodes", "servers", "files", "secrets"),
        # Our images' stand-ins, taken out of the inputs before anything renders.
        "built_images",
    }
)
