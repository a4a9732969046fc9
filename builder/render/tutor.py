"""Open edX's own settings and Kubernetes resources, rendered by Tutor in-process.

Tutor is the Open edX project's deployment tool; we use it as a library so that Open edX's
settings are never written by hand. Tutor invents a random value for every key of its
config/base.yml that the user config lacks, so we give it all of them, derived from the
master key, and refuse to render if a Tutor release adds one we do not know.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from builder.errors import MeshseedError, bad_input
from builder.render import media
from builder.secrets import Purpose, SecretDeriver

# The Tutor release whose openedx image images/upstream.yaml pins; pyproject pins the same.
TUTOR_VERSION = "22.0.3"
# Tutor's templates that make up what runs in the cluster; its caddy is replaced by ours.
K8S_TEMPLATES = ("deployments.yml", "services.yml", "volumes.yml")
# Tutor's kustomization: its configMapGenerator names the files each workload mounts,
# the core's and every plugin's.
KUSTOMIZATION = "kustomization.yml"
# Where a plugin's rendered files land in Tutor's env: plugins/<plugin>/<template path>.
PLUGIN_ENV = "plugins/"
# Init tasks as `tutor k8s do init` runs them, in its order: (service, template).
INIT_TASKS = (("mysql", "mysql.sh"), ("lms", "meilisearch.sh"), ("lms", "lms.sh"), ("cms", "cms.sh"))
# config/base.yml keys whose base value is already deterministic: Tutor computes the
# Meilisearch API key from the master key and the key uid.
COMPUTED_BASE_KEYS = frozenset({"MEILISEARCH_API_KEY"})


@dataclass(frozen=True)
class TutorOutput:
    """What Tutor rendered: app files by path, k8s YAML by template, init scripts in order."""

    files: dict[str, str]
    # Tutor's configMapGenerator: (ConfigMap name, env paths of its files), in its order.
    generators: tuple[tuple[str, tuple[str, ...]], ...]
    k8s: dict[str, str]
    init: tuple[tuple[str, str], ...]
    config: dict[str, Any]


def site_settings(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """Tutor's public settings, from site.yaml."""
    openedx = inputs["openedx"]
    return {
        "LMS_HOST": inputs["lms_host"],
        "CMS_HOST": inputs["studio_host"],
        "PLATFORM_NAME": openedx["platform_name"],
        "CONTACT_EMAIL": openedx["contact_email"],
        "ENABLE_HTTPS": True,
        # Our Caddy (caddy.yaml) terminates TLS; Tutor's own web proxy is not deployed.
        "ENABLE_WEB_PROXY": False,
        "K8S_NAMESPACE": openedx["namespace"],
        # The Galera cluster's router, which forwards to its one writer (components/galera.py).
        "MYSQL_HOST": f"mysql.{openedx['namespace']}.svc.cluster.local",
        "MYSQL_PORT": 3306,
        # A label value, not a secret: stable per cluster, unlike Tutor's random one.
        "ID": hashlib.sha256(f"meshseed/tutor-id/{inputs['cluster']}".encode()).hexdigest()[:24],
        # Named in site.yaml (tutor_plugins), pinned in pyproject.
        "PLUGINS": list(openedx["plugins"]),
        "PLUGIN_INDEXES": [],
        "MFE_HOST": openedx["mfe_host"],
        # Each image setting images/upstream.yaml fills (`tutor:`), by digest.
        **{setting: image["pinned"] for setting, image in openedx["images"].items()},
        # Where Open edX finds MongoDB: the replica set components/openedx_mongodb.py runs
        # in place of Tutor's single mongodb (RUN_MONGODB false, the members' names).
        **(inputs.get("mongodb") or {}).get("tutor", {}),
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
    "MONGODB_PASSWORD",
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
        # The replica set's openedx user (components/openedx_mongodb.py creates it).
        "MONGODB_PASSWORD": secrets.derive(Purpose.OPENEDX_MONGODB_PASSWORD).text,
        "MYSQL_ROOT_PASSWORD": secrets.derive(Purpose.OPENEDX_MYSQL_ROOT_PASSWORD).text,
        "OPENEDX_MYSQL_PASSWORD": secrets.derive(Purpose.OPENEDX_MYSQL_PASSWORD).text,
        "OPENEDX_SECRET_KEY": secrets.derive(Purpose.LMS_DJANGO_SECRET_KEY).text,
    }


def media_settings(inputs: Mapping[str, Any], secrets: SecretDeriver) -> dict[str, str]:
    """What the uploaded-files patch (render/media.py) reads: the store's host and Open edX's key."""
    return media.tutor_settings(
        inputs["lms_host"],
        secrets.derive(Purpose.GARAGE_OPENEDX_KEY_ID).text,
        secrets.derive(Purpose.GARAGE_OPENEDX_SECRET_KEY).text,
    )


def _check_versions() -> None:
    from tutor.__about__ import __version__  # noqa: PLC0415

    if __version__ != TUTOR_VERSION:
        raise MeshseedError(
            f"Tutor {__version__} is installed, but the pinned openedx image is Tutor {TUTOR_VERSION}'s; "
            f"install tutor=={TUTOR_VERSION}"
        )


def is_image_setting(key: str) -> bool:
    """Tutor's image settings: DOCKER_IMAGE_OPENEDX, MFE_DOCKER_IMAGE, NOTES_DOCKER_IMAGE..."""
    return "DOCKER_IMAGE" in key


def check_image_tags(config: Mapping[str, Any], images: Mapping[str, Mapping[str, str]]) -> None:
    """Each pinned image carries the tag Tutor and the site's plugins would run.

    The tag says which build of Open edX or of the MFEs the image is (tutor-indigo's
    themed builds end in -indigo), so a settings file and an image from different
    releases, or a theme enabled over an unthemed image, are refused here.
    """
    from tutor import config as tutor_config  # noqa: PLC0415
    from tutor import env as tutor_env  # noqa: PLC0415

    from builder.oci.reference import parse_reference  # noqa: PLC0415

    defaults = tutor_config.get_defaults()
    problems = []
    for setting, image in sorted(images.items()):
        if setting not in defaults:
            problems.append(f"{setting} ({image['reference']}): neither Tutor nor the site's plugins have it")
            continue
        expected = str(tutor_env.render_unknown(dict(config), defaults[setting]))
        if parse_reference(image["reference"]).tag != parse_reference(expected).tag:
            problems.append(f"{setting}: pinned {image['reference']}, Tutor would run {expected}")
    if problems:
        plugins = ", ".join(config["PLUGINS"]) or "no plugins"
        raise bad_input(
            f"images/upstream.yaml: images for Tutor {TUTOR_VERSION} with {plugins} do not match:\n  "
            + "\n  ".join(problems),
            hint="pin the tag Tutor names (same repository or a mirror of it), then run `meshseed lock`",
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


_loaded: list[tuple[str, ...]] = []


def load_plugins(names: tuple[str, ...]) -> None:
    """Load Tutor's plugins into its hooks, as Tutor's own CLI does.

    A plugin registers its hooks when its module is imported, which happens once per
    process, so one process renders with one set of plugins.
    """
    from tutor import plugins  # noqa: PLC0415
    from tutor.hooks.catalog import Actions  # noqa: PLC0415

    wanted = tuple(sorted(names))
    if _loaded:
        if _loaded[0] != wanted:
            raise MeshseedError(
                f"Tutor's plugins {', '.join(_loaded[0])} are loaded in this process; "
                f"{', '.join(wanted)} need a process of their own"
            )
        return
    # Tutor discovers the installed plugins when its core is ready.
    Actions.CORE_READY.do()
    missing = [name for name in wanted if not plugins.is_installed(name)]
    if missing:
        raise bad_input(
            f"site.yaml: tutor_plugins: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
            "not installed",
            hint="install each plugin's pinned release beside meshseed (pip install tutor-<name>==...) "
            "or remove it from tutor_plugins",
        )
    # load_all() reports a plugin that fails to load and goes on; a render without it
    # would be a different site, so it is an error here.
    plugins.load_all(wanted)
    failed = [name for name in wanted if not plugins.is_loaded(name)]
    if failed:
        raise MeshseedError(f"the Tutor plugins {', '.join(failed)} failed to load (see the message above)")
    _loaded.append(wanted)


def render(inputs: Mapping[str, Any], secrets: SecretDeriver) -> TutorOutput:
    """Render Open edX's settings, k8s resources and init scripts for one site."""
    _check_versions()
    load_plugins(tuple(inputs["openedx"]["plugins"]))
    media.register_patches()
    from tutor import env as tutor_env  # noqa: PLC0415
    from tutor.hooks.catalog import Filters  # noqa: PLC0415

    config = full_config(
        {**site_settings(inputs), **derived_settings(secrets), **media_settings(inputs, secrets)}
    )
    check_image_tags(config, inputs["openedx"]["images"])
    renderer = tutor_env.Renderer(config)
    generators = config_map_generators(_text(renderer.render_template(KUSTOMIZATION)))
    files = {
        path: _text(renderer.render_template(path.removeprefix(PLUGIN_ENV)))
        for _, paths in generators
        for path in paths
    }
    k8s = {name: _text(renderer.render_template(f"k8s/{name}")) for name in K8S_TEMPLATES}
    core = [
        (service, tutor_env.read_core_template_file("jobs", "init", script)) for service, script in INIT_TASKS
    ]
    # The plugins' own tasks (OAuth clients, waffle flags, forum indices) after Tutor's.
    tasks = [*core, *(task for task in Filters.CLI_DO_INIT_TASKS.iterate() if task not in core)]
    init = tuple((service, renderer.render_str(script)) for service, script in tasks)
    return TutorOutput(files, generators, k8s, init, config)


def config_map_generators(kustomization: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The ConfigMaps Tutor's kustomization generates, with the env paths of their files."""
    document = yaml.safe_load(kustomization)
    return tuple(
        (generator["name"], tuple(generator["files"])) for generator in document.get("configMapGenerator", [])
    )


def _text(rendered: str | bytes) -> str:
    if isinstance(rendered, bytes):
        raise MeshseedError("Tutor rendered a binary file where text was expected")
    return rendered


def secret_values(config: Mapping[str, Any]) -> list[str]:
    """The secret values in Tutor's config, which must appear in Secrets only."""
    keys = [*DERIVED_KEYS, "MEILISEARCH_API_KEY", media.SECRET_KEY]
    return sorted({str(config[key]) for key in keys})
