"""Open edX's MongoDB as a replica set: one member per server, three on larger sites.

It replaces Tutor's single mongodb Deployment: Tutor is told not to run one (RUN_MONGODB)
and where the members are (MONGODB_HOST lists them all, MONGODB_REPLICA_SET names the
set), so the LMS, Studio and the forum (tutor-forum reads the same settings) connect with
a replica-set URI through Tutor's own settings. The members authenticate each other with
a keyFile derived from the master key; the setup Job initiates the set, adds missing
members, sets the default write concern to majority and creates the users
(setup.js, deciding with replica-set.js).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import BackupJob, Cluster, Component, SecretSpec
from builder.cluster.digest import digest
from builder.cluster.flows import Flow, Pods
from builder.components.openedx import APPS, INIT
from builder.components.openedx_datastores import SNAPSHOT
from builder.secrets import Purpose

NAMESPACE = "openedx"
MEMBERS = Pods(NAMESPACE, "mongodb")
SETUP = Pods(NAMESPACE, "mongodb-setup")
REPLICA_SET = "openedx"
# Tutor's MONGODB_USERNAME; its password is Tutor's MONGODB_PASSWORD (render/tutor.py).
USER = "openedx"
# Tutor's MONGODB_DATABASE and tutor-forum's FORUM_MONGODB_DATABASE: the openedx user's.
DATABASES = ("openedx", "cs_comments_service")
# The mongo image's mongodb user.
UID = 999
MAX_MEMBERS = 3


class OpenEdxMongoDB(Component):
    name = "openedx-mongodb"
    key = "mongodb"
    images = ("mongodb",)
    ports: ClassVar[Mapping[str, int]] = {"mongodb": 27017}
    secrets: ClassVar[Mapping[str, SecretSpec]] = {
        "mongodb_keyfile": SecretSpec.of(Purpose.OPENEDX_MONGODB_KEYFILE),
        "mongodb_root_password": SecretSpec.of(Purpose.OPENEDX_MONGODB_ROOT_PASSWORD),
        "mongodb_openedx_password": SecretSpec.of(Purpose.OPENEDX_MONGODB_PASSWORD),
        "mongodb_backup_password": SecretSpec.of(Purpose.OPENEDX_MONGODB_BACKUP_PASSWORD),
    }
    files: ClassVar[Mapping[str, str]] = {"replica-set.js": "replica-set.js", "setup.js": "setup.js"}
    manifests = ("openedx-mongodb", "openedx-mongodb-secrets")
    alert_rules = "alerts.yml.j2"
    scrape_configs = "scrape.yml.j2"

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        port = cluster.ports["mongodb"]
        count = min(MAX_MEMBERS, len(cluster.site.servers))
        names = [f"mongodb-{index}.mongodb.{NAMESPACE}.svc.cluster.local" for index in range(count)]
        return {
            "namespace": NAMESPACE,
            "replica_set": REPLICA_SET,
            "replicas": count,
            "members": [f"{name}:{port}" for name in names],
            "port": port,
            "uid": UID,
            "user": USER,
            "databases": list(DATABASES),
            "storage": "20Gi",
            # Tutor's settings (render/tutor.py adds them to its config): Tutor's init
            # script waits for each host of a comma-separated MONGODB_HOST, and Open edX's
            # and the forum's MongoClient take the list with MONGODB_PORT as seeds.
            "tutor": {
                "RUN_MONGODB": False,
                "MONGODB_HOST": ",".join(names),
                "MONGODB_PORT": port,
                "MONGODB_REPLICA_SET": REPLICA_SET,
                "MONGODB_USERNAME": USER,
                "MONGODB_AUTH_SOURCE": "admin",
            },
        }

    def flows(self, cluster: Cluster) -> list[Flow]:
        port = (cluster.ports["mongodb"],)
        return [
            # Replication, heartbeats and elections among the members.
            Flow(MEMBERS, MEMBERS, port),
            Flow(SETUP, MEMBERS, port),
            # The apps, their workers and the init tasks (forum indices) read and write.
            *(Flow(client, MEMBERS, port) for client in (*APPS, INIT)),
        ]

    def backup_jobs(self, cluster: Cluster) -> list[BackupJob]:
        # The image's own mongodump, from a secondary, through the snapshot script.
        return [
            BackupJob(
                kind="mongodb",
                image=cluster.images["mongodb"],
                uid=UID,
                daily_at=(2, 45),
                source=MEMBERS,
                ports=(cluster.ports["mongodb"],),
                command=(*SNAPSHOT, "mongodb"),
                credentials={"MONGODB_BACKUP_PASSWORD": "mongodb_backup_password"},
            )
        ]

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "setup_sha256": digest(
                files["replica-set.js"],
                files["setup.js"],
                inputs["images"]["mongodb"],
                *inputs["mongodb"]["members"],
            ),
        }


COMPONENT = OpenEdxMongoDB()
