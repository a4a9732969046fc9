"""Open edX's datastores as Tutor defines them: MySQL, MongoDB, Redis, Meilisearch, SMTP.

Their workloads come out of Tutor's render with the apps (components/openedx.py); this
module declares what they need of the cluster and how the backup node copies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import BackupJob, Cluster, Component, Namespace, SecretSpec
from builder.cluster.flows import Flow, Pods, to_internet
from builder.components.openedx import APPS, INIT
from builder.secrets import Purpose

NAMESPACE = "openedx"
SMTP = Pods(NAMESPACE, "smtp")
# bash in both images (Oracle Linux's and Ubuntu's); the script sets pipefail, which the
# mongo image's sh (dash) lacks.
SNAPSHOT = ("bash", "/scripts/snapshot.sh")


class OpenEdxDatastores(Component):
    name = "openedx-datastores"
    key = "datastores"
    # redis is the redis component's (three members with Sentinel); the flows to its router
    # under Tutor's name stay here with the other stores'.
    images = ("meilisearch", "mongodb", "mysql", "smtp")
    namespaces = (Namespace(NAMESPACE, restricted=True),)
    ports: ClassVar[Mapping[str, int]] = {
        "mysql": 3306,
        "mongodb": 27017,
        "redis": 6379,
        "meilisearch": 7700,
        "smtp": 8025,
    }
    secrets: ClassVar[Mapping[str, SecretSpec]] = {
        # Tutor's MYSQL_ROOT_PASSWORD (render/tutor.py derives it with the same purpose).
        "mysql_root_password": SecretSpec.of(Purpose.OPENEDX_MYSQL_ROOT_PASSWORD),
    }
    files: ClassVar[Mapping[str, str]] = {"backup-snapshot.sh": "backup-snapshot.sh.j2"}
    backup_scripts: ClassVar[Mapping[str, str]] = {"snapshot.sh": "backup-snapshot.sh"}

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        ports = cluster.ports
        return {
            "mysql_host": f"mysql.{NAMESPACE}.svc.cluster.local",
            "mysql_port": ports["mysql"],
            "mongodb_host": f"mongodb.{NAMESPACE}.svc.cluster.local",
            "mongodb_port": ports["mongodb"],
        }

    def flows(self, cluster: Cluster) -> list[Flow]:
        ports = cluster.ports
        stores = ("mysql", "mongodb", "redis", "meilisearch")
        return [
            # The apps, their workers and the init tasks (migrations, indexes, the first
            # Celery task) use every store; only the apps and workers send mail.
            *(
                Flow(client, Pods(NAMESPACE, store), (ports[store],))
                for client in (*APPS, INIT)
                for store in stores
            ),
            *(Flow(app, SMTP, (ports["smtp"],)) for app in APPS),
            # The relay delivers to the recipients' mail servers (25) or a submission
            # smarthost (587); it is the only pod that speaks SMTP outwards.
            *to_internet(SMTP, (25, 587), "the SMTP relay delivers mail"),
        ]

    def backup_jobs(self, cluster: Cluster) -> list[BackupJob]:
        # Each with its image's own dump tool, through the snapshot script.
        times = {"mysql": (2, 15), "mongodb": (2, 45)}
        credentials = {"mysql": {"MYSQL_ROOT_PASSWORD": "mysql_root_password"}}
        return [
            BackupJob(
                kind=kind,
                image=cluster.images[kind],
                uid=999,
                daily_at=daily_at,
                source=Pods(NAMESPACE, kind),
                ports=(cluster.ports[kind],),
                command=(*SNAPSHOT, kind),
                credentials=credentials.get(kind, {}),
            )
            for kind, daily_at in times.items()
        ]


COMPONENT = OpenEdxDatastores()
