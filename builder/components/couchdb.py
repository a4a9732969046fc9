"""CouchDB: one member per server in a StatefulSet, sharded with up to three copies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import (
    BACKUP_IMAGE,
    METRICS_MOUNT,
    BackupJob,
    Cluster,
    Component,
    Namespace,
    Scrape,
    SecretSpec,
)
from builder.cluster.digest import digest
from builder.cluster.flows import Flow, Pods
from builder.secrets import Purpose

NAMESPACE = "couchdb"
MEMBERS = Pods(NAMESPACE, "couchdb")
# The Job that joins the members into a cluster, over their HTTP API only.
SETUP = Pods(NAMESPACE, "couchdb-setup")


class CouchDB(Component):
    name = "couchdb"
    images = ("couchdb",)
    own_images = (BACKUP_IMAGE,)
    namespaces = (Namespace(NAMESPACE, restricted=True),)
    ports: ClassVar[Mapping[str, int]] = {
        "couchdb": 5984,
        "couchdb_metrics": 17986,
        "epmd": 4369,
        # One fixed Erlang distribution port (inet_dist_listen_min = max), so policies can name it.
        "erlang": 9100,
    }
    secrets: ClassVar[Mapping[str, SecretSpec]] = {
        "couchdb_password": SecretSpec.of(Purpose.COUCHDB_ADMIN_PASSWORD),
        "couchdb_auth_secret": SecretSpec.of(Purpose.COUCHDB_AUTH_SECRET),
        "couchdb_cookie": SecretSpec.of(Purpose.COUCHDB_ERLANG_COOKIE),
        "couchdb_uuid": SecretSpec.of(Purpose.COUCHDB_UUID),
    }
    files: ClassVar[Mapping[str, str]] = {
        "couchdb.ini": "couchdb.ini.j2",
        "couchdb-setup.sh": "couchdb-setup.sh.j2",
    }
    manifests = ("couchdb", "couchdb-secrets")
    alert_rules = "alerts.yml.j2"
    scrape_configs = "scrape.yml.j2"

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        members = [
            f"couchdb-{index}.couchdb.{NAMESPACE}.svc.cluster.local"
            for index in range(len(cluster.site.servers))
        ]
        return {
            "namespace": NAMESPACE,
            "replicas": len(members),
            "members": members,
            "seedlist": [f"couchdb@{member}" for member in members],
            "shard_copies": min(3, len(members)),
            "port": cluster.ports["couchdb"],
            "dist_port": cluster.ports["erlang"],
            "metrics_port": cluster.ports["couchdb_metrics"],
            "uid": 5984,
            "storage": "20Gi",
        }

    def flows(self, cluster: Cluster) -> list[Flow]:
        ports = cluster.ports
        return [
            # Members among themselves: the HTTP API, epmd and Erlang distribution.
            Flow(MEMBERS, MEMBERS, (ports["couchdb"], ports["epmd"], ports["erlang"])),
            Flow(SETUP, MEMBERS, (ports["couchdb"],)),
        ]

    def scrapes(self, cluster: Cluster) -> list[Scrape]:
        return [Scrape(MEMBERS, (cluster.ports["couchdb_metrics"],))]

    def backup_jobs(self, cluster: Cluster) -> list[BackupJob]:
        image = cluster.own_images.get(BACKUP_IMAGE)
        if image is None:
            return []
        return [
            BackupJob(
                kind="couchdb",
                image=image,
                uid=1000,
                daily_at=(2, 0),
                source=MEMBERS,
                ports=(cluster.ports["couchdb"],),
                # The image's entrypoint is the backup agent.
                args=(
                    "couchdb",
                    "--url",
                    f"http://couchdb-api.{NAMESPACE}.svc.cluster.local:{cluster.ports['couchdb']}",
                    "--out",
                    "/backups/couchdb",
                    "--metrics",
                    METRICS_MOUNT,
                ),
                env={"COUCHDB_USER": "admin"},
                credentials={"COUCHDB_PASSWORD": "couchdb_password"},
            )
        ]

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "config_sha256": digest(files["couchdb.ini"]),
            "setup_sha256": digest(files["couchdb-setup.sh"], inputs["images"]["couchdb"]),
        }


COMPONENT = CouchDB()
