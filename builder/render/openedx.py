"""Tutor's Kubernetes resources, adapted to this architecture.

Tutor's resources assume one replica of everything and settings in ConfigMaps. Here the
web apps and their Celery workers run on every server node with rolling updates that never
drop below the current count, every pod is hardened, settings that hold secrets move into
Secrets, and the init tasks become one Job whose name changes with its content, so that
k3s runs it on first boot and again after every upgrade.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from builder.cluster.k8s import (
    Document,
    config_map,
    container_security,
    pod_security,
    secret,
    server_placement,
)
from builder.errors import bad_input
from builder.render.listeners import listen_on_ipv6, tutor_files_on_ipv6
from builder.render.meilisearch_reindex import reindex_cronjob, reindex_script, reindex_secret
from builder.render.reschedulable import make_reschedulable, without_node_bound_volume
from builder.render.tutor import TUTOR_VERSION, TutorOutput, is_image_setting

NAMESPACE = "openedx"
SERVICE_ACCOUNT = "openedx"
# Tutor's own web proxy: replaced by ours (caddy.yaml). Tutor's MySQL (Deployment, Service,
# PVC, all named mysql): replaced by the Galera cluster and its router (components/galera.py),
# which Tutor's MYSQL_HOST names. Tutor's single redis (its Deployment, Service and volume,
# all named redis): replaced by Sentinel members and a router under the same Service name
# (components/redis.py).
DROPPED = frozenset({"caddy", "mysql", "redis"})
WEB_APPS = {"lms": "lms", "cms": "cms"}
WORKERS = {"lms-worker": "lms", "cms-worker": "cms"}
# Tutor's datastores, kept as Tutor defines them; a later highly available setup replaces
# openedx-datastores.yaml and points Tutor's *_HOST settings at it. A plugin's Deployment
# counts as a datastore when it mounts a PersistentVolumeClaim; otherwise it is stateless
# and runs one pod per server like the web apps (tutor-mfe's Caddy is one).
DATASTORES = ("meilisearch", "mongodb", "mysql", "smtp")
ENV_SECRET = "openedx-env"
INIT_SECRET = "openedx-init"
# The images' own writable paths when the root filesystem is read-only.
SCRATCH = {
    # Uploaded files go to Garage (render/media.py), not here; media and media-private
    # stay writable because Tutor's settings create these directories when they load.
    "openedx": ("/tmp", "/openedx/data", "/openedx/media", "/openedx/media-private"),
    # Caddy's data and config directories.
    "mfe": ("/tmp", "/data", "/config"),
}
RESOURCES = {
    "web": {"requests": {"cpu": "250m", "memory": "2Gi"}, "limits": {"memory": "3Gi"}},
    "worker": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "meilisearch": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    "mongodb": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
    "mysql": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    "smtp": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    "mfe": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    "init": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "3Gi"}},
    # A plugin's workload this table does not name.
    "plugin": {"requests": {"cpu": "50m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
}


# Celery forks one process per CPU unless told; under the worker's memory limit the count
# comes from the limit instead: what is left after the main process and the liveness
# probe (which loads Django in the same cgroup), divided by what one process grows to.
CELERY_OVERHEAD_MIB = 768
CELERY_PROCESS_MIB = 512


def celery_concurrency(limit: str) -> int:
    """Worker processes that fit a memory limit such as "2Gi"."""
    mebibytes = (
        int(limit.removesuffix("Gi")) * 1024 if limit.endswith("Gi") else int(limit.removesuffix("Mi"))
    )
    return max(1, (mebibytes - CELERY_OVERHEAD_MIB) // CELERY_PROCESS_MIB)


@dataclass(frozen=True)
class OpenedxManifests:
    """The Open edX part of dist/manifests, by file name."""

    apps: list[Document]
    datastores: list[Document]
    secrets: list[Document]
    init: list[Document]


def adapt(
    tutor: TutorOutput,
    *,
    servers: int,
    secret_values: Iterable[str],
    admin_password: str,
    pod_network: str,
    extra_init: tuple[tuple[str, str], ...] = (),
) -> OpenedxManifests:
    secret_texts = frozenset(secret_values)
    documents = [
        document
        for name in sorted(tutor.k8s)
        for document in yaml.safe_load_all(tutor.k8s[name])
        if document and document["metadata"]["name"] not in DROPPED
    ]
    refuse_unpinned(documents, tutor.config)
    files = tutor_files_on_ipv6(tutor.files)
    config_hash = _digest(files)
    mounted = {
        volume["configMap"]["name"]
        for document in documents
        for volume in _pod_spec(document).get("volumes", [])
        if "configMap" in volume
    }
    generated = {name: _files(files, paths) for name, paths in tutor.generators if name in mounted}
    # Settings that hold a credential (Django's, the env files) are mounted from Secrets.
    secret_sources = frozenset(
        name for name, contents in generated.items() if _holds_any(contents.values(), secret_texts)
    )
    env: dict[str, str] = {}
    apps: list[Document] = [_service_account()]
    datastores: list[Document] = []
    for document in documents:
        _own(document)
        name = document["metadata"]["name"]
        if document["kind"] == "Deployment":
            _harden(document, env, secret_texts, config_hash, secret_sources)
            if name in WORKERS:
                for container in document["spec"]["template"]["spec"]["containers"]:
                    limit = container["resources"]["limits"]["memory"]
                    container["args"] = [*container["args"], f"--concurrency={celery_concurrency(limit)}"]
            if name in DATASTORES or _claims_a_volume(document):
                _datastore(document)
                for container in document["spec"]["template"]["spec"]["containers"]:
                    listen_on_ipv6(name, container)
                    if name == "smtp":
                        relay_for_pods(container, pod_network)
                make_reschedulable(document)
                datastores.append(document)
            else:
                _spread(document, servers)
                apps += [document, _disruption_budget(name)]
        elif not without_node_bound_volume(document):
            continue
        elif name in DATASTORES:
            datastores.append(document)
        else:
            if document["kind"] == "Service":
                _cluster_only(document)
            apps.append(document)
    apps += [
        config_map(name, NAMESPACE, contents)
        for name, contents in generated.items()
        if name not in secret_sources
    ]
    secrets = [
        secret(name, NAMESPACE, contents) for name, contents in generated.items() if name in secret_sources
    ]
    secrets.append(secret(ENV_SECRET, NAMESPACE, {**env, "admin-password": admin_password}))
    tasks = tutor.init + extra_init
    scripts = {f"{index}-{service}.sh": script for index, (service, script) in enumerate(tasks)}
    secrets.append(secret(INIT_SECRET, NAMESPACE, scripts))
    init_job = _init_job(tutor, tasks, scripts)
    # Meilisearch's index, rebuilt when it is gone (meilisearch_reindex.py).
    secrets.append(reindex_secret(NAMESPACE, reindex_script(tutor.config, tutor.init)))
    return OpenedxManifests(apps, datastores, secrets, [init_job, reindex_cronjob(init_job)])


def refuse_unpinned(documents: Iterable[Document], config: Mapping[str, Any]) -> None:
    """Every image Tutor's workloads run must be pinned by digest in images.lock."""
    settings = {
        value: key for key, value in config.items() if is_image_setting(key) and isinstance(value, str)
    }
    unpinned = sorted(
        f"{document['metadata']['name']}: {image} ({settings.get(image, 'no setting')})"
        for document in documents
        for image in _images(document)
        if "@sha256:" not in image
    )
    if unpinned:
        plugins = ", ".join(config["PLUGINS"]) or "no plugins"
        raise bad_input(
            f"Tutor {TUTOR_VERSION} with {plugins} runs images that images.lock does not pin:\n  "
            + "\n  ".join(unpinned),
            hint="add each to images/upstream.yaml with the setting it fills (tutor: ...), "
            "then run `meshseed lock`",
        )


def _images(document: Document) -> list[str]:
    spec = _pod_spec(document)
    return [container["image"] for container in spec.get("initContainers", []) + spec.get("containers", [])]


def relay_for_pods(container: Document, pod_network: str) -> None:
    """Let the cluster's pods send through Tutor's mail relay.

    devture/exim-relay relays only for RELAY_FROM_HOSTS, which its Dockerfile sets to the
    three private IPv4 ranges; pods here have IPv6 addresses only, so the LMS's mail and
    Alertmanager's would be refused. Exim's lists split on colons unless told otherwise
    (`<;`), which IPv6 networks need.
    https://github.com/devture/exim-relay/blob/master/Dockerfile (ENV RELAY_FROM_HOSTS)
    https://github.com/devture/exim-relay/blob/master/exim.conf (hostlist relay_from_hosts)
    """
    relay = {"name": "RELAY_FROM_HOSTS", "value": f"<; {pod_network} ; ::1"}
    container["env"] = [*(v for v in container.get("env", []) if v["name"] != relay["name"]), relay]


def _digest(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path]}\0".encode())
    return digest.hexdigest()


def _files(files: Mapping[str, str], paths: Iterable[str]) -> dict[str, str]:
    """The files of one generator, keyed by base name, as kustomize keys them."""
    return {path.rsplit("/", 1)[-1]: files[path] for path in paths}


def _holds_any(texts: Iterable[str], secret_values: frozenset[str]) -> bool:
    return any(value in text for text in texts for value in secret_values)


def _pod_spec(document: Document) -> Document:
    spec: Document = document.get("spec", {}).get("template", {}).get("spec", {})
    return spec


def _claims_a_volume(document: Document) -> bool:
    return any("persistentVolumeClaim" in volume for volume in _pod_spec(document).get("volumes", []))


def _own(document: Document) -> None:
    metadata = document["metadata"]
    metadata["namespace"] = NAMESPACE
    metadata.setdefault("labels", {}).update(
        {"app.kubernetes.io/part-of": "openedx", "app.kubernetes.io/managed-by": "meshseed"}
    )


def _service_account() -> Document:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE},
        # Open edX never talks to the Kubernetes API.
        "automountServiceAccountToken": False,
    }


def _harden(
    document: Document,
    env: dict[str, str],
    secret_values: frozenset[str],
    config_hash: str,
    secret_sources: frozenset[str],
) -> None:
    """Service account, security contexts, resources, probes, secrets out of the spec."""
    name = document["metadata"]["name"]
    pod = document["spec"]["template"]
    spec = pod["spec"]
    spec["serviceAccountName"] = SERVICE_ACCOUNT
    spec["automountServiceAccountToken"] = False
    user = spec.get("securityContext", {}).get("runAsUser", 1000)
    spec["securityContext"] = {**spec.get("securityContext", {}), **pod_security(user)}
    image_kind = "openedx" if name in WEB_APPS or name in WORKERS else name
    scratch = SCRATCH.get(image_kind, ())
    for container in spec["containers"]:
        container["securityContext"] = container_security(read_only=bool(scratch))
        container["resources"] = copy.deepcopy(RESOURCES.get(_resource_class(name), RESOURCES["plugin"]))
        container["volumeMounts"] = container.get("volumeMounts", []) + [
            {"name": _scratch_name(path), "mountPath": path} for path in scratch
        ]
        for variable in container.get("env", []):
            if variable.get("value") in secret_values:
                env[variable["name"]] = variable.pop("value")
                variable["valueFrom"] = {"secretKeyRef": {"name": ENV_SECRET, "key": variable["name"]}}
        container.update(_probes(name, container))
    spec["volumes"] = [_volume_source(volume, secret_sources) for volume in spec.get("volumes", [])] + [
        {"name": _scratch_name(path), "emptyDir": {}} for path in scratch
    ]
    # Settings live in Secrets and ConfigMaps that keep their names, so a change must
    # roll the pods by itself.
    pod.setdefault("metadata", {}).setdefault("annotations", {})["meshseed/config-sha256"] = config_hash


def _resource_class(name: str) -> str:
    if name in WEB_APPS:
        return "web"
    if name in WORKERS:
        return "worker"
    return name


def _scratch_name(path: str) -> str:
    return "scratch" + path.replace("/", "-")


def _volume_source(volume: Document, secret_sources: frozenset[str]) -> Document:
    source = volume.get("configMap")
    if source is None or source["name"] not in secret_sources:
        return volume
    converted = {"secretName": source["name"], **{k: v for k, v in source.items() if k != "name"}}
    return {"name": volume["name"], "secret": converted}


def _probes(name: str, container: Document) -> Document:
    if name in WEB_APPS:
        # Django answers only to its ALLOWED_HOSTS; Tutor lists the service name there.
        check = {
            "httpGet": {"path": "/heartbeat", "port": 8000, "httpHeaders": [{"name": "Host", "value": name}]}
        }
        return {
            "startupProbe": {**check, "periodSeconds": 10, "failureThreshold": 60},
            "readinessProbe": {**check, "periodSeconds": 10, "timeoutSeconds": 5},
            "livenessProbe": {**check, "periodSeconds": 30, "timeoutSeconds": 10, "failureThreshold": 5},
        }
    if name in WORKERS:
        app = WORKERS[name]
        ping = f'celery --app={app}.celery inspect ping --destination "edx.{app}.core.default.$HOSTNAME"'
        probe = {"exec": {"command": ["sh", "-c", ping]}, "timeoutSeconds": 30}
        return {
            "startupProbe": {**probe, "periodSeconds": 20, "failureThreshold": 30},
            "livenessProbe": {**probe, "periodSeconds": 120, "failureThreshold": 3},
        }
    port = container["ports"][0]["containerPort"]
    socket = {"tcpSocket": {"port": port}}
    return {
        "readinessProbe": {**socket, "periodSeconds": 10},
        "livenessProbe": {**socket, "initialDelaySeconds": 30, "periodSeconds": 30, "failureThreshold": 5},
    }


def _spread(document: Document, servers: int) -> None:
    """One pod per server node, and rolling updates that never go below that."""
    name = document["metadata"]["name"]
    spec = document["spec"]
    spec["replicas"] = max(2, servers)
    spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    # Preferred rather than required: with one pod on every node, the surge pod of a
    # rolling update must be allowed to share a node for a moment.
    spec["template"]["spec"].update(server_placement())
    spec["template"]["spec"]["affinity"] = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }


def _cluster_only(service: Document) -> None:
    """Browsers reach the apps through the edge Caddy only: a NodePort (tutor-mfe's) would
    open the port on every node's public address."""
    spec = service["spec"]
    spec["type"] = "ClusterIP"
    for port in spec.get("ports", []):
        port.pop("nodePort", None)


def _datastore(document: Document) -> None:
    document["metadata"]["labels"]["meshseed/datastore"] = "tutor"
    document["spec"]["template"]["spec"].update(server_placement())


def _disruption_budget(name: str) -> Document:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}},
    }


def _init_job(tutor: TutorOutput, tasks: tuple[tuple[str, str], ...], scripts: Mapping[str, str]) -> Document:
    """Tutor's init tasks in its order: each an init container, the last the main one.

    Each task is idempotent (CREATE ... IF NOT EXISTS, migrate, --update), so rerunning
    them after an upgrade is safe; the name carries a digest of scripts and images, so an
    upgrade makes a new Job, which k3s runs, and prunes the old one.
    """
    images = {"mysql": tutor.config["DOCKER_IMAGE_MYSQL"]}
    containers = []
    for script, (service, _) in zip(sorted(scripts), tasks, strict=True):
        openedx = service != "mysql"
        containers.append(
            {
                "name": script.removesuffix(".sh"),
                "image": images.get(service, tutor.config["DOCKER_IMAGE_OPENEDX"]),
                "args": ["sh", "-e", f"/openedx/init/{script}"],
                "env": (
                    [
                        {"name": "SERVICE_VARIANT", "value": service},
                        {"name": "DJANGO_SETTINGS_MODULE", "value": f"{service}.envs.tutor.production"},
                        {
                            "name": "OPENEDX_ADMIN_PASSWORD",
                            "valueFrom": {"secretKeyRef": {"name": ENV_SECRET, "key": "admin-password"}},
                        },
                    ]
                    if openedx
                    else []
                ),
                "securityContext": container_security(read_only=False),
                "resources": copy.deepcopy(RESOURCES["init"]),
                "volumeMounts": [{"name": "init", "mountPath": "/openedx/init", "readOnly": True}]
                + (
                    [
                        {"name": "settings-lms", "mountPath": "/openedx/edx-platform/lms/envs/tutor/"},
                        {"name": "settings-cms", "mountPath": "/openedx/edx-platform/cms/envs/tutor/"},
                        {"name": "config", "mountPath": "/openedx/config"},
                    ]
                    if openedx
                    else []
                ),
            }
        )
    digest = hashlib.sha256(yaml.safe_dump([scripts, containers], sort_keys=True).encode()).hexdigest()
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"openedx-init-{digest[:10]}",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/name": "openedx-init", "app.kubernetes.io/part-of": "openedx"},
        },
        "spec": {
            "backoffLimit": 10,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "openedx-init"}},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(1000),
                    **server_placement(),
                    "initContainers": containers[:-1],
                    "containers": containers[-1:],
                    "volumes": [
                        {"name": "init", "secret": {"secretName": INIT_SECRET, "defaultMode": 0o555}},
                        *(
                            {"name": volume, "secret": {"secretName": source}}
                            for volume, source in (
                                ("settings-lms", "openedx-settings-lms"),
                                ("settings-cms", "openedx-settings-cms"),
                                ("config", "openedx-config"),
                            )
                        ),
                    ],
                },
            },
        },
    }
