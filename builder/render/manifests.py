"""dist/manifests/: everything k3s applies from /var/lib/rancher/k3s/server/manifests.

Open edX comes from Tutor (tutor.py, adapted by openedx.py); CouchDB, Caddy, monitoring,
backups and network policies come from the Jinja2 templates in cloud-init/manifests/. Every
file is parsed back and re-written by the deterministic YAML writer, after checks that no
image is named by tag and that no secret sits outside a *-secrets.yaml file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from builder.det.yamlfmt import FAST_LOADER, dump_documents
from builder.errors import MeshseedError
from builder.network import cluster_networks
from builder.render import flows, openedx, tutor
from builder.render.k8s import SERVER_SELECTOR, Document, container_security, pod_security
from builder.render.manifest_rules import SECRET_SUFFIX, check_manifest
from builder.render.ports import Ports
from builder.render.templates import environment, render
from builder.secrets import Purpose, SecretDeriver
from builder.site import Role, Site
from builder.site.model import Retention
from builder.store.derivation import BuildContext, Derivation

# Upstream images the manifests run; images.lock must pin each of them.
IMAGES = (
    "blackbox-exporter",
    "caddy",
    "couchdb",
    "meilisearch",
    "mongodb",
    "mysql",
    "node-exporter",
    "openedx",
    "prometheus",
    "redis",
    "smtp",
)
# Files embedded in manifests, rendered first: output name -> template.
HELPER_TEMPLATES = {
    "couchdb.ini": "couchdb.ini.j2",
    "couchdb-setup.sh": "couchdb-setup.sh.j2",
    "edge.Caddyfile": "edge.Caddyfile.j2",
    "issuer.Caddyfile": "issuer.Caddyfile.j2",
    "cert-sync.sh": "cert-sync.sh.j2",
    "prometheus.yml": "prometheus.yml.j2",
    "alerts.yml": "alerts.yml.j2",
    "backup-snapshot.sh": "backup-snapshot.sh.j2",
    "openedx-admin.sh": "openedx-admin.sh.j2",
}
MANIFEST_TEMPLATES = (
    "namespaces",
    "network-policies",
    "couchdb",
    "couchdb-secrets",
    "caddy",
    "monitoring",
    "backup",
    "backup-secrets",
)
BACKUP_ONLY = frozenset({"backup", "backup-secrets"})
BACKUP_PATH = "/var/lib/meshseed/backups"
# Our own backup agent's image, once `meshseed publish` has pinned it in images.lock.
BACKUP_IMAGE = "backup"
ACME_DIRECTORY = "acme-v02.api.letsencrypt.org-directory"


def missing_images(images: Mapping[str, str]) -> list[str]:
    return [name for name in IMAGES if name not in images]


def manifests_inputs(
    site: Site, overlays: Mapping[str, str], images: Mapping[str, str], backup_image: str | None
) -> dict[str, Any]:
    """Everything public the manifests depend on; secrets are added at build time."""
    ports = Ports()
    servers = site.servers
    couchdb_ns = "couchdb"
    members = [f"couchdb-{index}.couchdb.{couchdb_ns}.svc.cluster.local" for index in range(len(servers))]
    networks = cluster_networks(site.cluster)
    backups = site.with_role(Role.BACKUP)
    nodes = [
        {"name": node.name, "role": node.role.value, "overlay": overlays[node.name]} for node in site.nodes
    ]
    all_flows = flows.flows(
        ports,
        node_addresses=[node["overlay"] for node in nodes],
        cluster_prefix=str(networks.prefix),
        backup=bool(backups),
    )
    inputs: dict[str, Any] = {
        "cluster": site.cluster,
        "domain": site.domain,
        "lms_host": site.lms_host,
        "studio_host": site.studio_host,
        "platform_name": site.cluster,
        "contact_email": f"contact@{site.domain}",
        "admin_email": f"admin@{site.domain}",
        "namespace": openedx.NAMESPACE,
        "images": {name: images[name] for name in IMAGES},
        "nodes": nodes,
        "servers": [node.name for node in servers],
        "ports": ports.as_dict(),
        "namespaces": [
            {"name": "openedx", "restricted": True},
            {"name": couchdb_ns, "restricted": True},
            {"name": "edge", "restricted": False},
            {"name": "monitoring", "restricted": False},
            *([{"name": "backup", "restricted": True}] if backups else []),
        ],
        "policies": flows.policies(all_flows),
        "couchdb": {
            "namespace": couchdb_ns,
            "replicas": len(servers),
            "members": members,
            "seedlist": [f"couchdb@{member}" for member in members],
            "shard_copies": min(3, len(servers)),
            "port": ports.couchdb,
            "dist_port": ports.erlang,
            "metrics_port": ports.couchdb_metrics,
            "uid": 5984,
            "storage": "20Gi",
        },
        "caddy": {
            "namespace": "edge",
            "uid": 1000,
            "http_port": ports.caddy_http,
            "https_port": ports.caddy_https,
            "metrics_port": ports.caddy_metrics,
            "certificate_port": ports.certificate,
            "storage": "/data",
            "acme_email": f"hostmaster@{site.domain}",
            "acme_directory": ACME_DIRECTORY,
            "issuer_http": f"caddy-issuer.edge.svc.cluster.local:{ports.caddy_http}",
            "certificate_url": f"http://caddy-issuer.edge.svc.cluster.local:{ports.certificate}/certificate",
            "local_certificate_port": ports.local_certificate,
            "certificate_copies": "/certs",
            "sync_seconds": 300,
            "sites": [
                {
                    "name": "lms",
                    "host": site.lms_host,
                    "upstream": f"lms.openedx.svc.cluster.local:{ports.openedx}",
                },
                {
                    "name": "studio",
                    "host": site.studio_host,
                    "upstream": f"cms.openedx.svc.cluster.local:{ports.openedx}",
                },
            ],
        },
        "monitoring": {
            "namespace": "monitoring",
            "node_exporter_port": ports.node_exporter,
            "textfile_dir": f"{BACKUP_PATH}/metrics",
            "backup_max_age_hours": 26,
            "certificate_min_days": 14,
        },
        "backup": _backup_inputs(backups[0].name, images, backup_image, ports, site.backups.retention)
        if backups
        else None,
    }
    return inputs


def _backup_inputs(
    node: str, images: Mapping[str, str], backup_image: str | None, ports: Ports, retention: Retention
) -> dict[str, Any]:
    snapshot = ["sh", "-eu", "/scripts/snapshot.sh"]
    jobs: list[dict[str, Any]] = [
        {
            "kind": "mysql",
            "image": images["mysql"],
            "uid": 999,
            "schedule": "15 2 * * *",
            "command": [*snapshot, "mysql"],
            "args": [],
            "env": {},
            "credentials": {"MYSQL_ROOT_PASSWORD": "mysql-root-password"},
        },
        {
            "kind": "mongodb",
            "image": images["mongodb"],
            "uid": 999,
            "schedule": "45 2 * * *",
            "command": [*snapshot, "mongodb"],
            "args": [],
            "env": {},
            "credentials": {},
        },
    ]
    if backup_image is not None:
        jobs.insert(
            0,
            {
                "kind": "couchdb",
                "image": backup_image,
                "uid": 1000,
                "schedule": "0 2 * * *",
                "command": [],
                # The image's entrypoint is the backup agent.
                "args": [
                    "couchdb",
                    "--url",
                    f"http://couchdb-api.couchdb.svc.cluster.local:{ports.couchdb}",
                    "--out",
                    "/backups/couchdb",
                    "--metrics",
                    "/backups/metrics",
                ],
                "env": {"COUCHDB_USER": "admin"},
                "credentials": {"COUCHDB_PASSWORD": "couchdb-password"},
            },
        )
        kinds = [job["kind"] for job in jobs]
        jobs.append(
            {
                "kind": "rotate",
                "image": backup_image,
                "uid": 1000,
                "schedule": "30 4 * * *",
                "command": [],
                "args": [
                    "rotate",
                    *(argument for kind in kinds for argument in ("--root", f"/backups/{kind}")),
                    "--daily",
                    str(retention.daily),
                    "--weekly",
                    str(retention.weekly),
                    "--monthly",
                    str(retention.monthly),
                ],
                "env": {},
                "credentials": {},
            }
        )
    return {
        "namespace": "backup",
        "node": node,
        "path": BACKUP_PATH,
        "capacity": "200Gi",
        "jobs": jobs,
        "mysql_host": f"mysql.openedx.svc.cluster.local --port {ports.mysql}",
        "mongodb_host": f"mongodb.openedx.svc.cluster.local:{ports.mongodb}",
    }


def manifests_derivation(
    site: Site,
    *,
    overlays: Mapping[str, str],
    images: Mapping[str, str],
    backup_image: str | None,
    templates: Path,
    deriver: SecretDeriver,
) -> Derivation:
    names = [*HELPER_TEMPLATES.values(), *(f"{name}.yaml.j2" for name in MANIFEST_TEMPLATES)]
    return Derivation(
        name="manifests",
        build=build_manifests,
        inputs={**manifests_inputs(site, overlays, images, backup_image), "tutor": tutor.TUTOR_VERSION},
        sources={name: templates / "manifests" / name for name in names},
        secrets=deriver,
        dist_path="manifests",
    )


def _secrets(deriver: SecretDeriver, config: Mapping[str, Any]) -> dict[str, str]:
    return {
        "couchdb_password": deriver.derive(Purpose.COUCHDB_ADMIN_PASSWORD).text,
        "couchdb_auth_secret": deriver.derive(Purpose.COUCHDB_AUTH_SECRET).text,
        "couchdb_cookie": deriver.derive(Purpose.COUCHDB_ERLANG_COOKIE).text,
        "couchdb_uuid": deriver.derive(Purpose.COUCHDB_UUID).text,
        "mysql_root_password": str(config["MYSQL_ROOT_PASSWORD"]),
        "openedx_admin_password": deriver.derive(Purpose.OPENEDX_ADMIN_PASSWORD).text,
    }


def _digest(*texts: str) -> str:
    return hashlib.sha256("\0".join(texts).encode()).hexdigest()


def build_manifests(ctx: BuildContext) -> None:
    inputs = ctx.inputs
    env = environment(tuple((name, ctx.source(name).decode()) for name in sorted(ctx.derivation.sources)))
    rendered = tutor.render(inputs, ctx.secrets)
    secrets = _secrets(ctx.secrets, rendered.config)
    # The templates build security contexts with the same helpers as openedx.py.
    context: dict[str, Any] = {
        **inputs,
        "server_selector": SERVER_SELECTOR,
        "pod_security": pod_security,
        "container_security": container_security,
    }
    files: dict[str, str] = {}
    for name, template in HELPER_TEMPLATES.items():
        if name.startswith("backup") and inputs["backup"] is None:
            continue
        files[name] = render(
            env, template, {**context, "files": files}, origin=f"cloud-init/manifests/{template}"
        )
    context["couchdb"] = {
        **inputs["couchdb"],
        "config_sha256": _digest(files["couchdb.ini"]),
        "setup_sha256": _digest(files["couchdb-setup.sh"], inputs["images"]["couchdb"]),
    }
    context["caddy"] = {
        **inputs["caddy"],
        "config_sha256": {
            "edge": _digest(files["edge.Caddyfile"], files["cert-sync.sh"]),
            "issuer": _digest(files["issuer.Caddyfile"]),
        },
    }
    context["monitoring"] = {
        **inputs["monitoring"],
        "config_sha256": _digest(files["prometheus.yml"], files["alerts.yml"]),
    }
    documents: dict[str, list[Document]] = {}
    for name in MANIFEST_TEMPLATES:
        if name in BACKUP_ONLY and inputs["backup"] is None:
            continue
        template = f"{name}.yaml.j2"
        text = render(
            env,
            template,
            {**context, "files": files, "secrets": secrets},
            origin=f"cloud-init/manifests/{template}",
        )
        documents[name] = _parse(text, template)
    secret_texts = sorted({*secrets.values(), *tutor.secret_values(rendered.config)})
    admin = ("lms", files["openedx-admin.sh"])
    adapted = openedx.adapt(
        rendered,
        servers=len(inputs["servers"]),
        secret_values=secret_texts,
        admin_password=secrets["openedx_admin_password"],
        extra_init=(admin,),
    )
    documents.update(
        {
            "openedx": adapted.apps,
            "openedx-datastores": adapted.datastores,
            "openedx-init": adapted.init,
            "openedx-secrets": adapted.secrets,
        }
    )
    for name in sorted(documents):
        text = dump_documents(documents[name])
        check_manifest(name, documents[name], text, secret_texts)
        ctx.write(f"{name}.yaml", text, private=name.endswith(SECRET_SUFFIX))


def _parse(text: str, template: str) -> list[Document]:
    try:
        return [document for document in yaml.load_all(text, Loader=FAST_LOADER) if document]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise MeshseedError(f"cloud-init/manifests/{template} rendered invalid YAML{where}") from None
