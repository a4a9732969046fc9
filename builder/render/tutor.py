"""Open edX's own settings and Kubernetes resources, rendered by Tutor in-process.

Tutor is the Open edX project's deployment tool; we use it as a library so that Open edX's
settings are never written by hand. Tutor invents a random value for every key of its
config/base.yml that the user config lacks, so we give it all of them, derived from the
master key, and refuse to render if a Tutor release adds one we do not know.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builder.errors import MeshseedError
from builder.secrets import Purpose, SecretDeriver

# The Tutor release whose openedx image images/upstream.yaml pins; pyproject pins the same.
TUTOR_VERSION = "22.0.3"
# Tutor plugins, pinned in pyproject at this Tutor release: the micro-frontends (the
# courseware, Studio's authoring and the learner's pages exist only as MFEs) and the
# discussions forum. Enabling another is naming it here and pinning it in pyproject.
PLUGINS = ("forum", "mfe")
# Files of plugins that the cluster mounts: their path in Tutor's env -> template.
PLUGIN_FILES = {"plugins/mfe/apps/mfe/Caddyfile": "mfe/apps/mfe/Caddyfile"}
# Tutor's templates that make up what runs in the cluster; its caddy is replaced by ours.
K8S_TEMPLATES = ("deployments.yml", "services.yml", "volumes.yml")
APP_PREFIXES = ("apps/openedx/", "apps/redis/")
# Init tasks as `tutor k8s do init` runs them, in its order: (service, template).
INIT_TASKS = (("mysql", "mysql.sh"), ("lms", "meilisearch.sh"), ("lms", "lms.sh"), ("cms", "cms.sh"))
# config/base.yml keys whose base value is already deterministic: Tutor computes the
# Meilisearch API key from the master key and the key uid.
COMPUTED_BASE_KEYS = frozenset({"MEILISEARCH_API_KEY"})


@dataclass(frozen=True)
class TutorOutput:
    """What Tutor rendered: app files by path, k8s YAML by template, init scripts in order."""

    files: dict[str, str]
    k8s: dict[str, str]
    init: tuple[tuple[str, str], ...]
    config: dict[str, Any]


def site_settings(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Tutor's public settings, from site.yaml and the pinned images."""
    images, openedx = inputs["images"], inputs["openedx"]
    return {
        "LMS_HOST": inputs["lms_host"],
        "CMS_HOST": inputs["studio_host"],
        "PLATFORM_NAME": openedx["platform_name"],
        "CONTACT_EMAIL": openedx["contact_email"],
        "ENABLE_HTTPS": True,
        # Our Caddy (caddy.yaml) terminates TLS; Tutor's own web proxy is not deployed.
        "ENABLE_WEB_PROXY": False,
        "K8S_NAMESPACE": openedx["namespace"],
        # A label value, not a secret: stable per cluster, unlike Tutor's random one.
        "ID": hashlib.sha256(f"meshseed/tutor-id/{inputs['cluster']}".encode()).hexdigest()[:24],
        "PLUGINS": list(PLUGINS),
        "PLUGIN_INDEXES": [],
        "MFE_HOST": openedx["mfe_host"],
        "MFE_DOCKER_IMAGE": images["mfe"],
        "DOCKER_IMAGE_OPENEDX": images["openedx"],
        "DOCKER_IMAGE_MYSQL": images["mysql"],
        "DOCKER_IMAGE_MONGODB": images["mongodb"],
        "DOCKER_IMAGE_REDIS": images["redis"],
        "DOCKER_IMAGE_MEILISEARCH": images["meilisearch"],
        "DOCKER_IMAGE_SMTP": images["smtp"],
        "DOCKER_IMAGE_CADDY": images["caddy"],
    }


def jwt_private_key(seed: bytes) -> str:
    """A 2048-bit RSA key in PEM, the same for the same seed.

    pycryptodome (a Tutor dependency) takes the randomness source as a parameter, so the
    key comes from a SHAKE-256 stream over the derived seed instead of the OS.
    """
    from Crypto.PublicKey import RSA  # noqa: PLC0415 - loads only when Open edX renders

    stream = hashlib.shake_256(b"meshseed/jwt-rsa/" + seed)
    position = 0

    def randfunc(size: int) -> bytes:
        nonlocal position
        position += size
        return stream.digest(position)[-size:]

    return RSA.generate(2048, randfunc=randfunc).export_key().decode()


DERIVED_KEYS = (
    "CMS_OAUTH2_SECRET",
    "JWT_RSA_PRIVATE_KEY",
    "MEILISEARCH_MASTER_KEY",
    "MEILISEARCH_API_KEY_UID",
    "MYSQL_ROOT_PASSWORD",
    "OPENEDX_MYSQL_PASSWORD",
    "OPENEDX_SECRET_KEY",
)


def derived_settings(secrets: SecretDeriver) -> dict[str, str]:
    """Every secret of Tutor's config/base.yml, derived."""
    key_uid = secrets.derive(Purpose.OPENEDX_MEILISEARCH_KEY_UID).raw
    return {
        "CMS_OAUTH2_SECRET": secrets.derive(Purpose.OPENEDX_CMS_OAUTH2_SECRET).text,
        "JWT_RSA_PRIVATE_KEY": jwt_private_key(secrets.derive(Purpose.OPENEDX_JWT_RSA_SEED).raw),
        "MEILISEARCH_MASTER_KEY": secrets.derive(Purpose.OPENEDX_MEILISEARCH_MASTER_KEY).text,
        "MEILISEARCH_API_KEY_UID": str(uuid.UUID(bytes=key_uid, version=4)),
        "MYSQL_ROOT_PASSWORD": secrets.derive(Purpose.OPENEDX_MYSQL_ROOT_PASSWORD).text,
        "OPENEDX_MYSQL_PASSWORD": secrets.derive(Purpose.OPENEDX_MYSQL_PASSWORD).text,
        "OPENEDX_SECRET_KEY": secrets.derive(Purpose.LMS_DJANGO_SECRET_KEY).text,
    }


def _check_versions() -> None:
    from tutor.__about__ import __version__  # noqa: PLC0415

    if __version__ != TUTOR_VERSION:
        raise MeshseedError(
            f"Tutor {__version__} is installed, but the pinned openedx image is Tutor {TUTOR_VERSION}'s; "
            f"install tutor=={TUTOR_VERSION}"
        )


def check_openedx_release(reference: str) -> None:
    """The openedx image must be the one this Tutor release configures."""
    tag = reference.rpartition(":")[2]
    if tag != TUTOR_VERSION:
        raise MeshseedError(
            f"images/upstream.yaml: openedx is {reference}, but Open edX is configured by Tutor "
            f"{TUTOR_VERSION}; pin its image (overhangio/openedx:{TUTOR_VERSION}) or change the Tutor pin"
        )


def full_config(user: dict[str, Any]) -> dict[str, Any]:
    """Tutor's full config over `user`, refusing any key Tutor would fill with a random value."""
    from tutor import config as tutor_config  # noqa: PLC0415

    base = tutor_config.get_base()
    user = {**{key: base[key] for key in COMPUTED_BASE_KEYS}, **user}
    missing = sorted(set(base) - set(user))
    if missing:
        raise MeshseedError(
            f"Tutor {TUTOR_VERSION} would invent random values for {', '.join(missing)}; "
            "builder/render/tutor.py must derive them"
        )
    config = dict(user)
    tutor_config.update_with_defaults(config)
    tutor_config.render_full(config)
    return config


@functools.cache
def load_plugins(names: tuple[str, ...] = PLUGINS) -> None:
    """Load Tutor's plugins into its hooks, once per process, as Tutor's own CLI does."""
    from tutor import plugins  # noqa: PLC0415
    from tutor.hooks.catalog import Actions  # noqa: PLC0415

    Actions.CORE_READY.do()
    missing = [name for name in names if not plugins.is_installed(name)]
    if missing:
        raise MeshseedError(
            f"the Tutor plugins {', '.join(missing)} are not installed; "
            "install meshseed with its dependencies (pyproject pins them)"
        )
    plugins.load_all(list(names))


def render(inputs: Mapping[str, Any], secrets: SecretDeriver) -> TutorOutput:
    """Render Open edX's settings, k8s resources and init scripts for one site."""
    _check_versions()
    load_plugins()
    from tutor import env as tutor_env  # noqa: PLC0415
    from tutor.hooks.catalog import Filters  # noqa: PLC0415

    config = full_config({**site_settings(inputs), **derived_settings(secrets)})
    renderer = tutor_env.Renderer(config)
    files = {
        path: _text(renderer.render_template(path))
        for path in renderer.iter_templates_in("apps")
        if path.startswith(APP_PREFIXES)
    }
    files.update({path: _text(renderer.render_template(template)) for path, template in PLUGIN_FILES.items()})
    k8s = {name: _text(renderer.render_template(f"k8s/{name}")) for name in K8S_TEMPLATES}
    core = [
        (service, tutor_env.read_core_template_file("jobs", "init", script)) for service, script in INIT_TASKS
    ]
    # The plugins' own tasks (OAuth clients, waffle flags, forum indices) after Tutor's.
    tasks = [*core, *(task for task in Filters.CLI_DO_INIT_TASKS.iterate() if task not in core)]
    init = tuple((service, renderer.render_str(script)) for service, script in tasks)
    return TutorOutput(files, k8s, init, config)


def _text(rendered: str | bytes) -> str:
    if isinstance(rendered, bytes):
        raise MeshseedError("Tutor rendered a binary file where text was expected")
    return rendered


def secret_values(config: Mapping[str, Any]) -> list[str]:
    """The secret values in Tutor's config, which must appear in Secrets only."""
    keys = [*DERIVED_KEYS, "MEILISEARCH_API_KEY"]
    return sorted({str(config[key]) for key in keys})
