"""The seam every cluster component implements: one module that declares all about it.

A component (CouchDB, Caddy, monitoring, ...) names its template folder under
cloud-init/manifests/, the images it runs, its namespaces and ports, the network flows it
needs, the secrets it derives, its inputs from the site, the digests that roll its pods,
its alert rules and scrape targets, and its backup jobs. The manifests derivation
(builder/manifests/derivation.py) only loops over the registered components, so adding one
touches no other module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from builder.cluster.flows import Flow, Pods
from builder.cluster.k8s import Document
from builder.network import ClusterNetworks
from builder.resources import manifest_templates
from builder.secrets import RECIPES, Purpose, Recipe, SecretDeriver
from builder.site import Role, Site

# Our backup agent's image (images/backup/), which `meshseed build --images` builds and
# carries to the backup node itself; the backup jobs that need it are left out without it.
BACKUP_IMAGE = "backup"
# Where the backup node keeps them, on its own disk (node-setup makes the folder). Its
# parent /var/lib/meshseed is private (0700).
BACKUP_PATH = "/var/lib/meshseed/backups"
# The backup jobs' last success times, for node-exporter's textfile collector: outside
# /var/lib/meshseed, world-readable (0755, files 0644), since node-exporter runs as nobody
# with no capabilities. Only the backup node has it; the jobs see it at METRICS_MOUNT.
METRICS_PATH = "/var/lib/meshseed-metrics"
METRICS_MOUNT = "/metrics"


@dataclass(frozen=True)
class Namespace:
    name: str
    # Its pods all fit the restricted Pod Security profile, so the namespace enforces it;
    # otherwise `privileged`, for the reason given (the template writes it down).
    restricted: bool
    privileged_because: str = ""

    def __post_init__(self) -> None:
        if self.restricted == bool(self.privileged_because):
            raise ValueError(f"namespace {self.name}: restricted, or privileged for a stated reason")


@dataclass(frozen=True)
class SecretSpec:
    """One secret a component derives: its purpose names it in the HKDF info string."""

    purpose: str
    recipe: Recipe

    @classmethod
    def of(cls, purpose: Purpose) -> SecretSpec:
        return cls(purpose.value, RECIPES[purpose])


@dataclass(frozen=True)
class BackupJob:
    """A daily CronJob on the backup node that copies one datastore into its volume."""

    kind: str
    image: str
    uid: int
    # (hour, minute) in UTC; jobs are listed in the order they run.
    daily_at: tuple[int, int]
    # What the job reads from: the flow the backup namespace is allowed.
    source: Pods
    ports: tuple[int, ...]
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    # Environment variable -> name of a secret of the declaring component.
    credentials: Mapping[str, str] = field(default_factory=dict)

    @property
    def schedule(self) -> str:
        hour, minute = self.daily_at
        return f"{minute} {hour} * * *"


@dataclass(frozen=True)
class Scrape:
    """Pods Prometheus scrapes; their scrape job is in the component's scrape.yml.j2."""

    pods: Pods
    ports: tuple[int, ...]


@dataclass(frozen=True)
class Cluster:
    """What every component may read: the site, its addresses and the pinned images."""

    site: Site
    overlays: Mapping[str, str]
    networks: ClusterNetworks
    # Upstream name -> pinned reference.
    images: Mapping[str, str]
    ports: Mapping[str, int]
    # Tutor setting -> {"reference": by tag, "pinned": by digest}, for the images that
    # images/upstream.yaml marks as filling a Tutor setting (`tutor:`).
    tutor_images: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Our images this build makes (--images): name -> reference, a stand-in until the
    # manifests' build puts in its digest (builder/images/reference.py).
    own_images: Mapping[str, str] = field(default_factory=dict)
    # Every backup job the components declare, when the site has a backup node, and the
    # scripts they run (ConfigMap key -> rendered file).
    backup_jobs: tuple[BackupJob, ...] = ()
    backup_scripts: Mapping[str, str] = field(default_factory=dict)

    @property
    def backup_node(self) -> str | None:
        nodes = self.site.with_role(Role.BACKUP)
        return nodes[0].name if nodes else None


class Component:
    """Defaults for a component that declares nothing; subclasses override what they have."""

    # Its name, and its template folder under cloud-init/manifests/.
    name: ClassVar[str]
    # Where its inputs sit in the templates' context (default: its name).
    key: ClassVar[str | None] = None
    images: ClassVar[tuple[str, ...]] = ()
    # Images it runs if images.lock pins them, and otherwise leaves out (with a warning).
    optional_images: ClassVar[tuple[str, ...]] = ()
    # Our images (images/<name>/) it runs when the build makes them (--images), and
    # otherwise leaves out (with a warning); pods run them with OWN_PULL_POLICY.
    own_images: ClassVar[tuple[str, ...]] = ()
    namespaces: ClassVar[tuple[Namespace, ...]] = ()
    ports: ClassVar[Mapping[str, int]] = {}
    # Template context name -> the secret; they are available to every template as
    # `secrets.<name>`, and only the *-secrets.yaml files may hold them.
    secrets: ClassVar[Mapping[str, SecretSpec]] = {}
    # Files embedded in manifests (output name -> template), rendered before any manifest.
    files: ClassVar[Mapping[str, str]] = {}
    # dist/manifests/<name>.yaml, each rendered from <name>.yaml.j2 in its folder.
    manifests: ClassVar[tuple[str, ...]] = ()
    # ConfigMap key -> one of its files, for the backup jobs' scripts.
    backup_scripts: ClassVar[Mapping[str, str]] = {}
    # Fragments of Prometheus's alert rules and scrape jobs, in its folder, if it has them.
    alert_rules: ClassVar[str | None] = None
    scrape_configs: ClassVar[str | None] = None

    @property
    def context_key(self) -> str:
        return self.key or self.name

    def template_dir(self) -> Path:
        return manifest_templates() / self.name

    def enabled(self, cluster: Cluster) -> bool:
        return True

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        """Its public inputs from the site; secrets are derived at build time."""
        return {}

    def flows(self, cluster: Cluster) -> list[Flow]:
        return []

    def scrapes(self, cluster: Cluster) -> list[Scrape]:
        return []

    def backup_jobs(self, cluster: Cluster) -> list[BackupJob]:
        return []

    def image_roles(self, cluster: Cluster) -> dict[str, frozenset[Role]]:
        """The node roles its workloads of each image are scheduled on: the air-gap bundle
        of a role holds these images. By default its `images` run on the servers, where
        `server_selector` places them; its backup jobs' images are added for the backup
        node from backup_jobs(). tests/integration/test_placement.py checks every
        component's answer against the rendered manifests' selectors and tolerations."""
        return {name: frozenset({Role.SERVER}) for name in self.images}

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Digests of its configuration, merged into its inputs: a change rolls its pods."""
        return {}

    def documents(self, rendered: Rendering) -> dict[str, list[Document]]:
        """Manifests it makes in code rather than from templates (Open edX's, by Tutor)."""
        return {}

    def check(self, rendered: Rendering, manifests: Mapping[str, str]) -> None:
        """Refuse (MeshseedError) what it finds wrong in the finished manifests, by file."""


@dataclass
class Rendering:
    """The state of one manifests build that code-made documents may read."""

    inputs: Mapping[str, Any]
    files: Mapping[str, str]
    secrets: Mapping[str, str]
    deriver: SecretDeriver
    # Secret values found while rendering (Tutor's own), checked like derived ones.
    secret_values: set[str] = field(default_factory=set)
