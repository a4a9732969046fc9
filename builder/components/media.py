"""Garage: the S3 store of Open edX's uploaded files, one member per server, replicated.

Open edX's settings that point at it come from render/media.py (Tutor patches); browsers
and the Open edX pods reach it at files.<lms_host> through caddy-edge (components/caddy.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from builder.cluster.component import BackupJob, Cluster, Component, Namespace, SecretSpec
from builder.cluster.digest import digest
from builder.cluster.flows import Flow, Pods
from builder.render import media
from builder.secrets import Purpose

NAMESPACE = "media"
MEMBERS = Pods(NAMESPACE, "garage")
# Lays out the cluster, imports Open edX's key and creates the buckets, over the admin API.
BOOTSTRAP = Pods(NAMESPACE, "garage-bootstrap")
# Garage keeps each object on this many members, in distinct zones (one zone per member,
# and required anti-affinity puts each member on its own server); reads and writes need a
# quorum of them, so the StatefulSet is labelled meshseed/quorum: majority.
MAX_REPLICATION = 3


class Media(Component):
    name = "media"
    # The bootstrap Job runs Python from the openedx image: Garage's image holds only its binary.
    images = ("garage", "openedx")
    namespaces = (Namespace(NAMESPACE, restricted=True),)
    ports: ClassVar[Mapping[str, int]] = {
        "garage_s3": 3900,
        "garage_rpc": 3901,
        "garage_web": 3902,
        "garage_admin": 3903,
    }
    secrets: ClassVar[Mapping[str, SecretSpec]] = {
        "garage_rpc_secret": SecretSpec.of(Purpose.GARAGE_RPC_SECRET),
        "garage_admin_token": SecretSpec.of(Purpose.GARAGE_ADMIN_TOKEN),
        "garage_key_id": SecretSpec.of(Purpose.GARAGE_OPENEDX_KEY_ID),
        "garage_secret_key": SecretSpec.of(Purpose.GARAGE_OPENEDX_SECRET_KEY),
    }
    files: ClassVar[Mapping[str, str]] = {
        "garage.toml": "garage.toml.j2",
        "garage-bootstrap.py": "garage-bootstrap.py.j2",
        "garage-snapshot.py": "garage-snapshot.py.j2",
    }
    backup_scripts: ClassVar[Mapping[str, str]] = {"garage-snapshot.py": "garage-snapshot.py"}
    manifests = ("media", "media-secrets")

    def inputs(self, cluster: Cluster) -> dict[str, Any]:
        ports = cluster.ports
        members = len(cluster.site.servers)
        return {
            "namespace": NAMESPACE,
            "replicas": members,
            "replication": min(MAX_REPLICATION, members),
            "members": [
                f"garage-{index}.garage-members.{NAMESPACE}.svc.cluster.local" for index in range(members)
            ],
            "pod_network": str(cluster.networks.pods),
            "region": media.REGION,
            "public_bucket": media.PUBLIC_BUCKET,
            "buckets": list(media.BUCKETS),
            # The backup job reads inside the cluster; its signatures name this host.
            "internal_endpoint": f"http://garage.{NAMESPACE}.svc.cluster.local:{ports['garage_s3']}",
            "s3_port": ports["garage_s3"],
            "rpc_port": ports["garage_rpc"],
            "web_port": ports["garage_web"],
            "admin_port": ports["garage_admin"],
            "uid": 1000,
            "storage": "50Gi",
            # Garage's layout wants a capacity per member; equal ones spread data evenly.
            "capacity_bytes": 50 * 1024**3,
        }

    def flows(self, cluster: Cluster) -> list[Flow]:
        ports = cluster.ports
        return [
            # Members among themselves: Garage's RPC (replication, layout, quorum).
            Flow(MEMBERS, MEMBERS, (ports["garage_rpc"],)),
            Flow(BOOTSTRAP, MEMBERS, (ports["garage_admin"],)),
        ]

    def backup_jobs(self, cluster: Cluster) -> list[BackupJob]:
        # With the openedx image's Python and boto3 (Garage's image has no shell or client).
        image = cluster.images.get("openedx")
        if image is None:
            return []
        return [
            BackupJob(
                kind="garage",
                image=image,
                uid=1000,
                daily_at=(3, 15),
                source=MEMBERS,
                ports=(cluster.ports["garage_s3"],),
                command=("python3", "/scripts/garage-snapshot.py"),
                credentials={
                    "AWS_ACCESS_KEY_ID": "garage_key_id",
                    "AWS_SECRET_ACCESS_KEY": "garage_secret_key",
                },
            )
        ]

    def digests(self, files: Mapping[str, str], inputs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "config_sha256": digest(files["garage.toml"]),
            "bootstrap_sha256": digest(files["garage-bootstrap.py"], inputs["images"]["openedx"]),
        }


COMPONENT = Media()
