"""Open edX's datastores as Tutor defines them: MySQL, Redis, Meilisearch, SMTP.

MongoDB is a replica set of its own (components/openedx_mongodb.py), which also declares
its flows and backup job; its snapshot goes through the same script as MySQL's.

Their workloads come out of Tutor's render with the apps (components/openedx.py); this
module declares what they need of the cluster and how the backup node copies them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import Cluster, Component, Namespace, SecretSpec
from builder.cluster.flows import Flow, Pods, to_internet
from builder.components.openedx import APPS, INIT, REINDEX
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
    images = ("meilisearch", "mysql", "smtp")
    namespaces = (Namespace(NAMESPACE, restricted=True),)
    ports: ClassVar[Mapping[str, int]] = {
        "mysql": 3306,
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
        }

    def flows(self, cluster: Cluster) -> list[Flow]:
        ports = cluster.ports
        stores = ("mysql", "redis", "meilisearch")
        return [
            # The apps, their workers, the init tasks (migrations, indexes, the first
            # Celery task) and the Meilisearch rebuild (the same tasks' search part) use
            # every store; only the apps and workers send mail.
            *(
                Flow(client, Pods(NAMESPACE, store), (ports[store],))
                for client in (*APPS, INIT, REINDEX)
                for store in stores
            ),
            *(Flow(app, SMTP, (ports["smtp"],)) for app in APPS),
            # The relay delivers to the recipients' mail servers (25) or a submission
            # smarthost (587); it is the only pod that speaks SMTP outwards.
            *to_internet(SMTP, (25, 587), "the SMTP relay delivers mail"),
        ]

    # No backup jobs of its own: MySQL's is the Galera component's (it dumps from a
    # non-writer member), MongoDB's the replica set's (from a secondary); both run the
    # snapshot script this component declares.


COMPONENT = OpenEdxDatastores()
